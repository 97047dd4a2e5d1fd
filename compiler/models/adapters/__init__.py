"""Model families. One adapter per family, each in its own module, imported on first use so that
a BERT plan never imports timm and a ViT plan never imports transformers."""
from __future__ import annotations

import importlib

from cofc.compiler.models.adapters._base import ModelAdapter, WeightSlices
from cofc.errors import CofcError

FAMILIES: dict[str, str] = {
    "vit": "cofc.compiler.models.adapters.vit:VitAdapter",
    "bert": "cofc.compiler.models.adapters.bert:BertAdapter",
    "gpt2": "cofc.compiler.models.adapters.gpt2:Gpt2Adapter",
}


def get_adapter(family: str) -> ModelAdapter:
    try:
        module_name, class_name = FAMILIES[family].split(":")
    except KeyError:
        raise CofcError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}") from None
    return getattr(importlib.import_module(module_name), class_name)()


__all__ = ["FAMILIES", "ModelAdapter", "WeightSlices", "get_adapter"]
