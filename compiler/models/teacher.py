"""Teacher checkpoints: one small file that says how to rebuild a pretrained teacher offline.

A teacher file (`torch.save` of a plain dict, loadable with `weights_only=True`) holds:
  family       adapter name ("vit", "bert", "gpt2")
  arch         what the adapter needs to build the backbone (timm kwargs, or an HF source)
  state_dict   weights the file carries (the whole ViT; only the task head for a BERT whose
               backbone comes from an installed package, which keeps the file a few KB)
  preprocess   how raw inputs become model inputs (image mean/std, or tokenizer + max length)
  dataset, classes, test_accuracy, command   provenance: what it was trained on and how
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.adapters.base import Inputs, ModelAdapter
from cofc.compiler.planning.spec import TransformerSpec
from cofc.errors import CofcError

if TYPE_CHECKING:
    from cofc.compiler.plan import Plan


@dataclass
class Teacher:
    """A loaded teacher: its backbone+head module, the record it came from, and its family's
    adapter, which every stage needs beside the module (to preprocess, run, slice)."""
    family: str
    model: nn.Module
    record: dict[str, Any]
    adapter: ModelAdapter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.adapter = get_adapter(self.family)

    @property
    def num_classes(self) -> int:
        return len(self.record["classes"])

    @property
    def spec(self) -> TransformerSpec:
        return self.adapter.spec(self.model)

    def preprocess(self, raw: Any) -> Inputs:
        """Raw data-set inputs (uint8 images or texts) as this teacher's model inputs."""
        return self.adapter.preprocess(self.record, raw)

    def logits(self, inputs: Inputs) -> torch.Tensor:
        return self.adapter.logits(self.model, inputs)


def save_teacher(path: str | Path, record: dict[str, Any]) -> None:
    """Write atomically, so an interrupted run never leaves half a checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(record, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def teacher_from_plan(plan: "Plan") -> Teacher:
    """The plan's teacher: its checkpoint file, or a pretrained source with a fresh task head."""
    t = plan.teacher
    if t.checkpoint is not None:
        return load_teacher(t.checkpoint)
    size_key = "img_size" if t.family == "vit" else "max_length"
    record = {"family": t.family, "dataset": plan.dataset.name,
              "arch": {"source": t.source, "num_classes": t.classes, size_key: t.input_size},
              "preprocess": {"kind": "image" if t.family == "vit" else "text", size_key: t.input_size}}
    adapter = get_adapter(t.family)
    model = adapter.build_teacher(record).eval()
    record.setdefault("classes", [str(i) for i in range(t.classes)])
    return Teacher(t.family, model, record)


def load_teacher(path: str | Path) -> Teacher:
    """Rebuild the teacher a file describes, through its family's adapter."""
    path = Path(path)
    if not path.is_file():
        raise CofcError(f"teacher checkpoint {path} does not exist")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say which, not a pickle traceback
        raise CofcError(f"teacher checkpoint {path} is not a cofc teacher file: {exc}") from None
    if not isinstance(record, dict) or "family" not in record:
        raise CofcError(f"teacher checkpoint {path} is not a cofc teacher file (no 'family')")
    adapter = get_adapter(record["family"])
    model = adapter.build_teacher(record)
    model.eval()
    return Teacher(record["family"], model, record)
