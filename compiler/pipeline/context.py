"""What every stage of a build starts from: the checked plan, teacher and data, the data splits,
what the planner knows of each device, and the torch device the stages compute on."""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from tqdm import tqdm

from cofc.compiler.latency.predictor import Predictor, fit_predictor, predictor_path
from cofc.compiler.models.adapters._hf import HfClassifier, tokenizer_file
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.models.torch_device import CPU
from cofc.compiler.plan import Plan
from cofc.compiler.plan.prepare import Prepared
from cofc.compiler.planning.objective import DeviceModel, RuntimeCost
from cofc.compiler.planning.spec import TransformerSpec
from cofc.runtime.preprocess import packed_request_bytes


def log(message: str) -> None:
    tqdm.write(f"cofc: {message}", file=sys.stderr)


@dataclass
class Context:
    prepared: Prepared
    out: Path
    device: torch.device = CPU  # where torch runs (torch_device.py); ONNX export and Runtime stay on the CPU
    devices: list[DeviceModel] = field(init=False)
    cal: Split = field(init=False)  # ranks units (importance), and calibrates
    val: Split = field(init=False)  # scores policies in the search (eq. 7)
    test: Split = field(init=False)  # every accuracy in the report
    keys: dict[str, str] = field(default_factory=dict)  # each stage's cache key, once known

    def __post_init__(self) -> None:
        self.devices = device_models(self.plan, self.base)
        self.cal, self.val, _, self.test = self.prepared.splits()

    @property
    def plan(self) -> Plan:
        return self.prepared.plan

    @property
    def teacher(self) -> Teacher:
        return self.prepared.teacher

    @property
    def base(self) -> TransformerSpec:
        return self.prepared.base

    @property
    def input_bytes(self) -> int:
        """Bytes of one raw request on the wire, as the runtime packs it."""
        image = self.teacher.expects.image
        if image is not None:
            return packed_request_bytes("image", image.shape)
        tokenizer = Tokenizer.from_file(str(tokenizer_file(self.teacher.record)))  # the one the bundles carry
        model = self.teacher.model
        assert isinstance(model, HfClassifier)  # every text family's teacher is one
        return packed_request_bytes("text", max_length=model.seq_len, vocab_size=tokenizer.get_vocab_size())


def runtime_cost(table: dict[str, Any]) -> RuntimeCost:
    """The runtime's measured cost per request on a table's device (tools/message_costs.py); none
    for a table measured before the runtime was (it then plans with eq. 5 and 6 alone)."""
    found = table.get("runtime", {})
    return RuntimeCost(**{f.name: float(found[f.name]) for f in dataclasses.fields(RuntimeCost) if f.name in found})


def device_models(plan: Plan, base: TransformerSpec) -> list[DeviceModel]:
    """Each device's predictor (fitted and stored beside its table if not yet) and budgets."""
    models = []
    for i, d in enumerate(plan.devices):
        table = json.loads(d.profile.read_text())
        measured = table.get("provenance", {}).get("teacher")
        if not isinstance(measured, dict):
            raise plan.error(
                f"devices[{i}].profile",
                f"{d.profile} does not say which teacher it measured "
                "(provenance.teacher); capture it with 'cofc profile'",
            )
        if TransformerSpec(**measured) != base:
            raise plan.error(
                f"devices[{i}].profile",
                f"{d.profile} was profiled for another teacher or input size; profile this teacher on this device",
            )
        if table["provenance"].get("estimated"):
            log(
                f"warning: {d.name} plans against an ESTIMATED latency table ({d.profile}: "
                f"{table['provenance'].get('method')}); capture a measured one with 'cofc profile' on the device"
            )
        path = predictor_path(d.profile)
        if path.exists() and path.with_suffix(".npz").exists():
            predictor = Predictor.load(path)
        else:
            predictor = fit_predictor(table)
            predictor.save(path)
        throughput = statistics.median(r["flops"] / r["ms"] for r in table["rows"])
        models.append(
            DeviceModel(
                d.name,
                predictor,
                d.link_mbps,
                d.max_mflops * 1e6,
                d.memory_mb * 2**20,
                throughput,
                d.central,
                predictor.predict,
                runtime_cost(table),
            )
        )
    return models
