"""Teachers: from a plan in any of its forms, and the cofc teacher file, one small file that says
how to rebuild a pretrained teacher offline.

Whatever the form, a teacher is a record (the dict below) that its family's adapter builds the
model from; a Hugging Face classification folder and a timm name with a checkpoint file are
records whose `arch` points at those files (`hf_classifier`, or `timm` and `weights`).

A teacher file (`torch.save` of a plain dict, loadable with `weights_only=True`) holds:
  family       adapter name ("vit", "swin", "bert", "gpt2", ...)
  arch         what the adapter needs to build the backbone (timm kwargs, or an HF source)
  state_dict   weights the file carries (the whole ViT; only the task head for a BERT whose
               backbone comes from an installed package, which keeps the file a few KB)
  preprocess   how raw inputs become model inputs (image mean/std, or tokenizer + max length)
  dataset, classes, test_accuracy, command, torch_device   provenance: what it was trained on and how
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cofc.compiler.models.adapters import IMAGE_FAMILIES, get_adapter
from cofc.compiler.models.adapters.base import Inputs, ModelAdapter
from cofc.compiler.models.data import Expects, ImageInput
from cofc.compiler.planning.spec import TransformerSpec
from cofc.errors import CofcError, PlanError

if TYPE_CHECKING:
    from cofc.compiler.plan import Plan, TeacherPlan


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

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Teacher:
        """The teacher a record describes, built by its family's adapter, in inference mode."""
        return cls(record["family"], get_adapter(record["family"]).build_teacher(record).eval(), record)

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

    @property
    def expects(self) -> Expects:
        """What its data must be: texts, or images of its channels and size (resized as its
        record says), and its class names in head order."""
        prep, classes = self.record["preprocess"], tuple(map(str, self.record["classes"]))
        if prep["kind"] != "image":
            return Expects("text", classes)
        embed: Any = self.model.patch_embed  # timm's PatchEmbed; torch types its attributes Tensor | Module
        return Expects(
            "image",
            classes,
            ImageInput(
                embed.proj.in_channels,
                tuple(embed.img_size),
                prep.get("interpolation", "bilinear"),
                float(prep.get("crop_pct", 1.0)),
            ),
        )


def save_teacher(path: str | Path, record: dict[str, Any]) -> None:
    atomic_torch_save(Path(path), record)


def atomic_torch_save(path: Path, obj: Any) -> None:
    """`torch.save`, atomically: an interrupted run never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would surprise whoever copies the file on
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def teacher_from_plan(plan: Plan) -> Teacher:
    """The plan's teacher, in whichever form the plan gives it (loader.TEACHER_FORMS). A teacher
    that cannot be loaded is a PlanError at its field, naming the file and what is wrong."""
    t = plan.teacher
    try:
        if t.checkpoint is not None:
            teacher = load_teacher(t.checkpoint)
        elif t.hf_classifier is not None:
            teacher = _build(_folder_record(t.hf_classifier, t.input_size), plan)
        elif t.timm is not None:
            teacher = _build(_timm_record(t), plan)
        else:
            assert t.family is not None and t.source is not None  # the plan loader checked the family form
            teacher = _build(pretrained_record(t.family, t.source, t.classes, t.input_size), plan)
        prep = teacher.record["preprocess"]
        if prep["kind"] == "text":  # the plan's data says: one text or a pair
            if prep.get("pair_column") and plan.dataset.pair_column is None:
                raise plan.error(
                    "dataset.pair_column",
                    f"the teacher takes pairs of texts (trained with pair column {prep['pair_column']!r}): "
                    "name the data's second text column",
                )
            prep["pair_column"] = plan.dataset.pair_column
        return teacher
    except PlanError:
        raise
    except CofcError as exc:
        field = t.form if t.form != "family" else "source"
        if t.form == "timm" and str(t.weights) in str(exc):
            field = "weights"  # the file, not the name, is what is wrong
        raise plan.error(f"teacher.{field}", str(exc)) from None


def pretrained_record(family: str, source: str, num_classes: int | None, input_size: int | None) -> dict[str, Any]:
    """A family's pretrained backbone (an installed package or a saved folder) with a new head."""
    image = family in IMAGE_FAMILIES
    size_key = "img_size" if image else "max_length"
    return {
        "family": family,
        "arch": {"source": source, "num_classes": num_classes, size_key: input_size},
        "preprocess": {"kind": "image" if image else "text", size_key: input_size},
    }


def seeded_teacher(record: dict[str, Any], seed: int) -> Teacher:
    """`Teacher.from_record`, with a fresh task head's first weights drawn from `seed` (the global
    random state is left as it was), so that every process given the same record and seed (a
    resumed build, a rerun of `cofc teacher`) holds the same teacher."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Teacher.from_record(record)


def _build(record: dict[str, Any], plan: Plan) -> Teacher:
    """The teacher a record made from the plan describes (the adapter fills in what it reads), a
    fresh head drawn from the plan's seed."""
    record.setdefault("dataset", str(plan.dataset.name or plan.dataset.image_folder or plan.dataset.text_file))
    teacher = seeded_teacher(record, plan.objective.seed)
    record.setdefault("classes", [str(i) for i in range(record["arch"]["num_classes"])])  # a head without names
    return teacher


def _folder_record(folder: Path, input_size: int | None) -> dict[str, Any]:
    """A save_pretrained classification folder: family from config.json, classes from id2label,
    tokenizer from the folder (tokenizer.json, or built once from its vocabulary files); without
    an input_size, the adapter plans for 128 tokens or the model's positions if fewer."""
    from cofc.compiler.models.adapters._hf import folder_tokenizer, read_folder, text_preprocess

    info = read_folder(folder)
    prep = text_preprocess(str(folder_tokenizer(folder)), input_size, info.config.get("pad_token_id"))
    return {
        "family": info.family,
        "arch": {"hf_classifier": str(folder), "num_classes": len(info.classes)},
        "preprocess": prep,
        "classes": list(info.classes),
    }


def _timm_record(t: TeacherPlan) -> dict[str, Any]:
    """A timm name and checkpoint; the vit (or, for a swin name, the swin) adapter fills in
    classes, size and normalisation that the plan leaves to the checkpoint and timm's config."""
    prep: dict[str, Any] = {"kind": "image"}
    for key in ("mean", "std"):
        if getattr(t, key) is not None:
            prep[key] = list(getattr(t, key))
    return {
        "family": "swin" if (t.timm or "").startswith("swin_") else "vit",
        "preprocess": prep,
        "arch": {"timm": t.timm, "weights": str(t.weights), "num_classes": t.classes, "img_size": t.input_size},
    }


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
    return Teacher.from_record(record)
