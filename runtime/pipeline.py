"""The fused pipeline run in one process: every device's backbone, then the central aggregator.

This is the reference the distributed runtime must reproduce (same logits), and what
`cofc build` uses to measure the accuracy of what it ships: the bundles themselves, through
the same backend a device uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from cofc.runtime._closing import Closing
from cofc.runtime.backends import open_backend
from cofc.runtime.bundle import Bundle
from cofc.runtime.preprocess import Preprocessor
from cofc.runtime.texts import Text


class LocalPipeline(Closing):
    """Owns one backend per device and the aggregator until `close()`:
    `with LocalPipeline(bundles) as pipeline: logits = pipeline(raw)`."""

    def __init__(self, bundles: Sequence[Bundle], backend: str = "onnxruntime", threads: int = 1):
        central = [b for b in bundles if b.role == "central"]
        if len(central) != 1:
            raise ValueError(f"a pipeline needs exactly one central bundle, got {len(central)}")
        self.central = central[0]
        by_name = {b.device: b for b in bundles}
        missing = [d.name for d in self.central.fusion.devices if d.name not in by_name]
        if missing:
            raise ValueError(f"a pipeline needs every device's bundle; missing: {', '.join(missing)}")
        self.bundles = [by_name[d.name] for d in self.central.fusion.devices]
        self.preprocess = Preprocessor.for_bundle(self.central)
        precision = self.central.manifest.precision
        with contextlib.ExitStack() as opened:  # a failure half-way closes what was opened
            self.backbones = [
                opened.enter_context(
                    open_backend(backend, b.file("backbone.onnx"), threads=threads, precision=precision)
                )
                for b in self.bundles
            ]
            self.aggregator = opened.enter_context(
                open_backend(backend, self.central.file("aggregator.onnx"), threads=threads, precision=precision)
            )
            self._backends = opened.pop_all()

    def close(self) -> None:
        """Release every backend (idempotent)."""
        self._backends.close()

    def features(self, raw: np.ndarray | Sequence[Text]) -> list[np.ndarray]:
        inputs = self.preprocess(raw)
        return [next(iter(b.run({k: inputs[k] for k in (i.name for i in b.inputs)}).values())) for b in self.backbones]

    def fuse(self, features: Sequence[np.ndarray], mask: np.ndarray) -> np.ndarray:
        """Logits from per-device features; a missing device's features may be anything (zeros)."""
        return next(
            iter(
                self.aggregator.run(
                    {
                        "features": np.ascontiguousarray(np.concatenate(features, axis=1), dtype=np.float32),
                        "mask": np.ascontiguousarray(mask, dtype=np.float32),
                    }
                ).values()
            )
        )

    def __call__(self, raw: np.ndarray | Sequence[Text], mask: np.ndarray | None = None) -> np.ndarray:
        feats = self.features(raw)
        if mask is None:
            mask = np.ones((len(feats[0]), len(feats)), dtype=np.float32)
        return self.fuse(feats, mask)
