"""Model families: one adapter per family, each in its own module (`base.py` is the interface).

`FAMILIES` is the one list of families: the plan schema takes its choices from it. An adapter's
module is imported on first use, so that a BERT plan never imports timm, a ViT plan never imports
transformers, and reading a plan imports neither (nor torch)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cofc.errors import CofcError

if TYPE_CHECKING:
    from cofc.compiler.models.adapters.base import ModelAdapter

FAMILIES: dict[str, str] = {  # family -> "module:class" in this package
    "vit": "vit:VitAdapter",
    "bert": "bert:BertAdapter",
    "gpt2": "gpt2:Gpt2Adapter",
    "mpnet": "mpnet:MpnetAdapter",
}


def get_adapter(family: str) -> "ModelAdapter":
    try:
        module_name, class_name = FAMILIES[family].split(":")
    except KeyError:
        raise CofcError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}") from None
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), class_name)()
