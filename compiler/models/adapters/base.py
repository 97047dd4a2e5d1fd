"""The one interface every model family implements, and the weight-slice copy they share.

A family adapter says three things about its models: how to build one (teacher from its record,
sub-model from a `SubModelSpec`), how to run one (inputs -> final-layer tokens -> pooled feature ->
task head), and where each parameter's axes live. The last is a table of
(parameter-name pattern, axis roles): with it, `copy_slices` cuts any family's teacher weights
into any sub-model with the same code. Names are matched exactly, never guessed: a parameter that
no rule names is an error (transformers renames modules between versions).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cofc.compiler.planning.slices import WeightSlices
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec

# Axis roles in a parameter: which teacher indices a sub-model keeps along that axis.
EMBED = "embed"  # embedding channels (d)
HEADS = "heads"  # h·head_dim attention outputs, one block of head_dim per head
QKV = "qkv"  # fused q|k|v: three HEADS blocks one after another
MLP = "mlp"  # MLP hidden neurons (D)
ALL = None  # kept whole (classes, patch pixels, vocabulary, positions)

Roles = tuple[str | None, ...]
Inputs = dict[str, torch.Tensor]


class ModelAdapter(ABC):
    """One model family (timm ViT, HF BERT, HF GPT2): build, run and slice its models."""

    family: ClassVar[str]
    # Matches a parameter inside transformer block k; group 1 is k.
    block_pattern: ClassVar[str]
    # Module paths the importance ranking hooks: the list of blocks, and inside a block the
    # layer whose input is the concatenated head outputs, and the one whose input is the MLP's
    # hidden neurons.
    blocks_path: ClassVar[str]
    head_mixer: ClassVar[str]
    mlp_out: ClassVar[str]
    # (pattern, roles) in order; the first pattern that matches the parameter name wins.
    param_roles: ClassVar[Sequence[tuple[str, Roles]]]

    # -- building ---------------------------------------------------------------------------
    @abstractmethod
    def build_teacher(self, record: dict[str, Any]) -> nn.Module:
        """The teacher (backbone and task head) a teacher record describes, weights loaded."""

    @abstractmethod
    def spec(self, model: nn.Module) -> TransformerSpec:
        """Read (L, d, h, D) and the family facts ω and φ need from a teacher."""

    @abstractmethod
    def build_submodel(self, teacher: nn.Module, sub: SubModelSpec) -> nn.Module:
        """A freshly initialised model of the teacher's family and config, shaped by `sub`
        (per-layer head counts and MLP widths may differ), with a task head of its own."""

    # -- running ----------------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, record: dict[str, Any], raw: Any) -> Inputs:
        """Raw data-set inputs (uint8 images or texts) to the model's input tensors."""

    @abstractmethod
    def token_features(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        """Final-layer token features, (batch, tokens, dim)."""

    @abstractmethod
    def pool(self, model: nn.Module, tokens: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """The family's own pooling of final tokens to one vector per input, (batch, dim)."""

    @abstractmethod
    def head(self, model: nn.Module) -> nn.Module:
        """The task head: pooled feature (batch, dim) -> logits (batch, classes)."""

    def logits(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        tokens = self.token_features(model, inputs)
        return self.head(model)(self.pool(model, tokens, inputs))

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        blocks = model.get_submodule(self.blocks_path)
        if not isinstance(blocks, nn.ModuleList | nn.Sequential):
            raise TypeError(f"{self.blocks_path} is a {type(blocks).__name__}, not a list of blocks")
        return list(blocks)

    def unit_groups(self, model: nn.Module) -> list[int]:
        """How many teacher channels (heads, neurons) one planning unit of each block stands for:
        1 in a flat transformer; 2^s in a hierarchical one's stage s (swin.py)."""
        return [1] * len(self.blocks(model))

    # -- slicing ----------------------------------------------------------------------------
    def roles_of(self, name: str) -> Roles:
        for pattern, roles in self.param_roles:
            if re.search(pattern, name):
                return roles
        raise KeyError(f"{self.family} adapter has no slicing rule for parameter {name!r}")

    @torch.no_grad()
    def copy_slices(self, teacher: nn.Module, student: nn.Module, slices: WeightSlices) -> None:
        """Copy the teacher's weights selected by `slices` into `student` (built from
        `slices.spec`). Every student parameter is written; a shape mismatch is an error."""
        base = self.spec(teacher)
        source = teacher.state_dict()
        block = re.compile(self.block_pattern)
        for name, target in student.state_dict().items():
            match = block.search(name)
            layer = int(match.group(1)) if match else None
            teacher_name = name
            if match:
                start, end = match.span(1)
                teacher_name = name[:start] + str(slices.layers[layer]) + name[end:]
            value = source[teacher_name]
            for axis, role in enumerate(self.roles_of(name)):
                if role is not ALL:
                    index = _role_index(role, layer, slices, base)
                    value = value.index_select(axis, torch.as_tensor(index, dtype=torch.long))
            if value.shape != target.shape:
                raise ValueError(
                    f"{name}: sliced teacher shape {tuple(value.shape)} != sub-model shape {tuple(target.shape)}"
                )
            target.copy_(value)


def _role_index(role: str, layer: int | None, slices: WeightSlices, base: TransformerSpec) -> list[int]:
    if role == EMBED:
        return list(slices.channels)
    if role == MLP:
        return list(slices.neurons[layer])
    hd = base.head_dim
    per_head = [h * hd + i for h in slices.heads[layer] for i in range(hd)]
    if role == HEADS:
        return per_head
    if role == QKV:
        width = base.heads * hd
        return [part * width + i for part in range(3) for i in per_head]
    raise ValueError(f"unknown axis role {role!r}")


def new_linear(in_features: int, out_features: int, like: nn.Module) -> nn.Linear:
    """A linear layer of a new shape with the bias setting of the one it replaces."""
    return nn.Linear(in_features, out_features, bias=getattr(like, "bias", None) is not None)
