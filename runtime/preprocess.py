"""Raw inputs to graph inputs on the device, with numpy and `tokenizers` only (no torch, no
transformers), exactly as the compiler's adapters preprocess them (checked in the tests)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


class Preprocessor:
    """Built from a bundle manifest's `preprocess` entry."""

    def __init__(self, spec: dict[str, Any], bundle_dir: Path):
        self.kind = spec["kind"]
        if self.kind == "image":
            self.mean = np.asarray(spec["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
            self.std = np.asarray(spec["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        elif self.kind == "text":
            from tokenizers import Tokenizer

            self.max_length = int(spec["max_length"])
            self.tokenizer = Tokenizer.from_file(str(bundle_dir / spec["tokenizer_file"]))
            self.tokenizer.enable_truncation(max_length=self.max_length)
            self.tokenizer.enable_padding(length=self.max_length, pad_id=spec.get("pad_id", 0),
                                          pad_token=spec.get("pad_token", "[PAD]"))
        else:
            raise ValueError(f"unknown input kind {self.kind!r}")

    def __call__(self, raw: np.ndarray | Sequence[str]) -> dict[str, np.ndarray]:
        if self.kind == "image":
            x = np.asarray(raw, dtype=np.float32) / 255.0
            if x.ndim == 3:
                x = x[:, None]
            return {"pixel_values": np.ascontiguousarray((x - self.mean) / self.std, dtype=np.float32)}
        enc = self.tokenizer.encode_batch(list(raw))
        return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
