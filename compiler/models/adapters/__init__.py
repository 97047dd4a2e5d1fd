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
    "t5": "t5:T5Adapter",
    "swin": "swin:SwinAdapter",
}
IMAGE_FAMILIES = ("vit", "swin")  # timm's; the others read text
PACKAGE_SOURCE = "package:"  # a pretrained `source` that names an installed model package, not a folder


def adapter_module(family: str) -> str:
    """The module that holds a family's adapter (a build's stages run it: cache keys count it)."""
    try:
        return f"{__name__}.{FAMILIES[family].split(':')[0]}"
    except KeyError:
        raise CofcError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}") from None


def get_adapter(family: str) -> ModelAdapter:
    return getattr(importlib.import_module(adapter_module(family)), FAMILIES[family].split(":")[1])()
