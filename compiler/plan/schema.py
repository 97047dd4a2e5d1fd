"""The plan schema: every field of plan.yaml with its type, default and check.

The choices of `teacher.family` and `dataset.name` come from the registries of families and data
sets, and every default lives here only (the loader fills them in; nothing downstream restates
them). No torch: reading a plan imports no model library.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cofc.compiler.models.adapters import FAMILIES
from cofc.compiler.models.datasets import DATASETS

PRECISIONS = ("fp32", "fp16", "int8")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Field:
    """One scalar field: its type(s), whether it must be present, and a check on its value that
    returns what is wrong (or None)."""

    types: tuple[type, ...]
    required: bool = True
    default: Any = None
    check: Callable[[Any], str | None] | None = None


def _positive(v: Any) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be a positive number"


def _positive_or_null(v: Any) -> str | None:
    return None if v is None else _positive(v)


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be 0 or more"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})"


def _name(v: str) -> str | None:
    return None if _NAME.match(v) else f"{v!r} is not a usable name (letters, digits, - _ .)"


def _fraction(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be at least 0 and below 1"


def _held_out(v: float) -> str | None:
    return None if 0 < v < 1 else "must be above 0 and below 1"


def _numbers(positive: bool) -> Callable[[Any], str | None]:
    """A list of one value per image channel (1 or 3), e.g. mean: [0.485, 0.456, 0.406]."""

    def check(v: list) -> str | None:
        if len(v) not in (1, 3) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            return f"must be a list of 1 or 3 numbers, one per channel (got {v!r})"
        if positive and min(v) <= 0:
            return "must be positive numbers"
        return None

    return check


def _port(v: int) -> str | None:
    return None if 1024 <= v <= 65535 else f"port {v} is outside 1024..65535"


def _opset(v: int) -> str | None:
    return None if 13 <= v <= 21 else f"opset {v} is outside the supported 13..21"


NUM, INT, STR, BOOL, LIST = (int, float), (int,), (str,), (bool,), (list,)

DEVICE = {
    "name": Field(STR, check=_name),
    "profile": Field(STR),
    "memory_mb": Field(NUM, check=_positive),
    "max_mflops": Field(NUM, check=_positive),
    "link_mbps": Field(NUM, check=_positive),
    "central": Field(BOOL, required=False, default=False),
    "address": Field(STR, required=False, default="127.0.0.1"),
}
SCHEMA = {
    "name": Field(STR, check=_name),
    # One of four forms (loader.TEACHER_FORMS says which fields go together).
    "teacher": {
        "checkpoint": Field(STR, required=False),  # a cofc teacher file
        "hf_classifier": Field(STR, required=False),  # a save_pretrained ...ForSequenceClassification folder
        "timm": Field(STR, required=False),  # a timm model name, with
        "weights": Field(STR, required=False),  # its checkpoint file (.pth, .safetensors)
        "family": Field(STR, required=False, check=_one_of(*FAMILIES)),
        "source": Field(STR, required=False),
        "classes": Field(INT, required=False, check=_positive),
        "input_size": Field(INT, required=False, check=_positive),
        "mean": Field(LIST, required=False, check=_numbers(positive=False)),
        "std": Field(LIST, required=False, check=_numbers(positive=True)),
    },
    # One of three sources: a built-in name, an image folder, or text files.
    "dataset": {
        "name": Field(STR, required=False, check=_one_of(*DATASETS)),
        "image_folder": Field(STR, required=False),
        "text_file": Field(STR, required=False),
        "test_file": Field(STR, required=False),
        "text_column": Field(STR, required=False, default="text"),
        "label_column": Field(STR, required=False, default="label"),
        "pair_column": Field(STR, required=False),
        "held_out": Field(NUM, required=False, default=0.2, check=_held_out),
        "calibration": Field(INT, check=_positive),
        "validation": Field(INT, check=_positive),
        "test": Field(INT + (type(None),), required=False, check=_positive_or_null),
    },
    "devices": [DEVICE],
    "objective": {
        "delta": Field(NUM, check=_positive),
        "initial": Field(INT, check=_positive),
        "iterations": Field(INT, check=_non_negative),
        "seed": Field(INT, required=False, default=0),
        # The fewest layers a sub-model may keep. The proxy (eq. 7) scores un-calibrated features,
        # and a shallow cut keeps the embeddings' information intact where a deep narrow one
        # loses it before calibration restores it: on text tasks it prefers 1-layer sub-models
        # that calibration cannot make deep. Set it to the teacher's depth to search widths only.
        "min_layers": Field(INT, required=False, default=1, check=_positive),
        # Whose best policy is calibrated and shipped: DeBo's, or a baseline's, to measure what the
        # search earns (tools/tradeoff.py --vary ship=debo,uniform).
        "ship": Field(STR, required=False, default="debo", check=_one_of("debo", "uniform", "random")),
        # A deadline in ms: policies whose predicted end-to-end time T (eq. 3) exceeds it are
        # infeasible, like those that break C1–C6. Unset: T only enters Ψ through δ.
        "max_ms": Field(NUM + (type(None),), required=False, check=_positive_or_null),
        # After the search, grow each member whose predicted t1 + t2 is below the slowest one's
        # into that time, within C1–C6 (compiler/planning/fill.py): no device left idle.
        "fill": Field(BOOL, required=False, default=False),
    },
    "export": {
        "precision": Field(STR, required=False, default="fp32", check=_one_of(*PRECISIONS)),
        "opset": Field(INT, required=False, default=17, check=_opset),
        # INT8 only: the most accuracy (a fraction) a graph's INT8 twin may lose before that graph
        # ships FP32 instead (compiler/export/precision.py says what it is measured on).
        "max_drop": Field(NUM, required=False, default=0.01, check=_fraction),
    },
    "calibration": {
        "epochs": Field(INT, required=False, default=4, check=_positive),
        "joint_epochs": Field(INT, required=False, default=2, check=_non_negative),
        "joint_lr": Field(NUM, required=False, default=5e-4, check=_positive),
        "weight_decay": Field(NUM, required=False, default=0.05, check=_non_negative),
        "feature": Field(STR, required=False, default="pool", check=_one_of("pool", "first")),
        "reading": Field(STR, required=False, default="up", check=_one_of("up", "printed")),
        "feature_dropout": Field(NUM, required=False, default=0.25, check=_fraction),
        "soft_labels": Field(NUM, required=False, default=0.0, check=_non_negative),
        "temperature": Field(NUM, required=False, default=4.0, check=_positive),
        "layer_distill": Field(NUM, required=False, default=0.0, check=_non_negative),
        "held_out_fusion": Field(BOOL, required=False, default=True),
    },
    "runtime": {
        "port": Field(INT, required=False, default=5555, check=_port),
        "deadline_ms": Field(NUM, required=False, default=500, check=_positive),
        "min_devices": Field(INT, required=False, default=1, check=_positive),
        # Stragglers: a worker whose p90 t1+t2 over the last `straggler_window` requests exceeds
        # slow_factor x deadline_ms is not waited for, but probed every `probe_every`-th request.
        "straggler_window": Field(INT, required=False, default=20, check=_positive),
        "probe_every": Field(INT, required=False, default=10, check=_positive),
        "slow_factor": Field(NUM, required=False, default=1.0, check=_positive),
    },
    "output": Field(STR),
}
