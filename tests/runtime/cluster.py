"""Helpers of the runtime tests: start a device as `cofc run`, real test images as requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cofc.compiler.models.datasets import load_dataset
from cofc.runtime.preprocess import Preprocessor

COFC = str(Path(sys.executable).with_name("cofc"))


def mnist_images():
    return load_dataset("mnist-5k").test.inputs


def requests_for(bundles, images):
    prep = Preprocessor.for_bundle(bundles["orin"])
    return [prep.pack(images[i : i + 1]) for i in range(len(images))]


def start(bundle, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [COFC, "run", "--bundle", str(bundle.path), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
