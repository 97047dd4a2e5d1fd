"""A user's own teacher and data, end to end, the way the issue's user comes with them: a Hugging
Face classification folder (BERT, MPNet, GPT2; tiny random weights written with save_pretrained)
with real texts in a CSV, JSONL or TSV file, a T5 encoder folder with a task on text pairs (two
text columns), and a timm ViT checkpoint or a small Swin's teacher file with an ImageFolder of PNGs.
Each plan is profiled (`cofc profile --plan`), built (`cofc build`), and asked about raw inputs of
its kind through `cofc run` (a worker process and the central one, CURVE over loopback)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cofc.compiler.cluster.bench_result import BenchResult
from cofc.compiler.models.data import load_data
from cofc.compiler.models.datasets import load_dataset
from cofc.compiler.models.teacher import save_teacher, teacher_from_plan
from cofc.compiler.pipeline.report import load_report
from cofc.compiler.plan import load_plan
from cofc.runtime.bundle import load_bundle
from cofc.runtime.pipeline import LocalPipeline
from cofc.runtime.preprocess import Preprocessor
from tests.helpers import LABELS, free_port, hf_model, run_cofc, save_folder, timm_checkpoint

pytestmark = pytest.mark.e2e

PLAN = """\
name: user-{family}
teacher: {teacher}
dataset: {dataset}
devices:
  - {{name: a, profile: profile.json, memory_mb: 64, max_mflops: 500, link_mbps: 100, central: true}}
  - {{name: b, profile: profile.json, memory_mb: 64, max_mflops: 500, link_mbps: 100}}
objective: {{delta: 0.1, initial: 2, iterations: 1{objective}}}
calibration: {{epochs: 1, joint_epochs: 1}}
runtime: {{port: {port}, deadline_ms: 5000}}
output: out
"""
TRAIN, TEST = 45, 15  # samples per split: calibration 20 and validation 10 come from TRAIN


@dataclass(frozen=True)
class Case:
    """One user's teacher and data: the plan's `teacher:` and `dataset:`, and what `cofc run` reads."""

    teacher: str
    dataset: str
    ask: str  # the --input of `cofc run`, relative to the plan's folder: the plan's test split,
    asked: list[str] | None = None  # or, where given, these texts alone
    text_column: str = "text"
    objective: str = ""  # more of the plan's objective, after a comma
    bench: bool = False  # also `cofc bench` the build (the pair task: the bench reads two columns)


def _texts(folder: Path, family: str) -> Case:
    """Real news texts (Reuters R8) labelled with the folder model's class names."""
    texts = load_dataset("reuters-r8").train.inputs[: TRAIN + TEST]
    rows = [{"body": t, "sentiment": LABELS[i % 3]} for i, t in enumerate(texts)]
    save_folder(hf_model(family), folder / "teacher")
    teacher = "{hf_classifier: teacher, input_size: 24}"
    if family == "mpnet":  # JSONL, the test split held out of the same file; asked: unlabelled JSONL
        _jsonl(folder / "texts.jsonl", rows)
        _jsonl(folder / "ask.jsonl", [{"body": r["body"]} for r in rows[TRAIN:]])
        return Case(
            teacher,
            "{text_file: texts.jsonl, text_column: body, label_column: sentiment, "
            "held_out: 0.25, calibration: 20, validation: 10}",
            "ask.jsonl",
            texts[TRAIN:],
            "body",
        )
    suffix, delimiter = (".csv", ",") if family == "bert" else (".tsv", "\t")
    for name, part in (("train", rows[:TRAIN]), ("test", rows[TRAIN:])):
        with open(folder / f"{name}{suffix}", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, ["body", "sentiment"], delimiter=delimiter)
            writer.writeheader()
            writer.writerows(part)
    return Case(
        teacher,
        f"{{text_file: train{suffix}, test_file: test{suffix}, text_column: body, "
        "label_column: sentiment, calibration: 20, validation: 10}",
        f"test{suffix}",
        text_column="body",
    )


def _pairs(folder: Path) -> Case:
    """A saved T5 encoder (tiny, random) and pairs of real news texts in CSV files, a new head of
    3 classes: the plan's pair_column makes every sample two texts, as `cofc run` reads them."""
    import torch
    from transformers import T5Config, T5EncoderModel

    from tests.models.test_t5 import CONFIG

    torch.manual_seed(0)
    save_folder(
        T5EncoderModel(T5Config(**{**CONFIG, "d_model": 32, "num_heads": 4, "d_ff": 64, "num_layers": 2})),
        folder / "teacher",
    )
    texts = load_dataset("reuters-r8").train.inputs[: 2 * (TRAIN + TEST)]
    rows = [
        {"premise": a[:300], "hypothesis": b[:200], "label": i % 3}
        for i, (a, b) in enumerate(zip(texts[::2], texts[1::2], strict=True))
    ]
    for name, part in (("train", rows[:TRAIN]), ("test", rows[TRAIN:])):
        with open(folder / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, ["premise", "hypothesis", "label"])
            writer.writeheader()
            writer.writerows(part)
    return Case(
        "{family: t5, source: teacher, classes: 3, input_size: 24}",  # a folder beside the plan
        "{text_file: train.csv, test_file: test.csv, text_column: premise, pair_column: hypothesis, "
        "calibration: 20, validation: 10}",
        "test.csv",
        text_column="premise",
        bench=True,
    )


def _jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _image_folder(folder: Path) -> None:
    """MNIST digits 0-2 as 80x72 RGB PNGs (so each is scaled and centre-cut to the model's side)."""
    from PIL import Image

    digits = load_dataset("mnist-5k").train
    for split, count in (("train", TRAIN), ("test", TEST)):
        for c, name in enumerate(("zero", "one", "two")):
            (folder / "images" / split / name).mkdir(parents=True)
            found = np.flatnonzero(digits.labels == c)
            for k, i in enumerate(found[: count // 3] if split == "train" else found[-(count // 3) :]):
                grey = Image.fromarray(digits.inputs[i]).resize((72, 80), Image.Resampling.BILINEAR)
                Image.merge("RGB", (grey, grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT), grey)).save(
                    folder / "images" / split / name / f"{k:03d}.png"
                )


IMAGES = "{image_folder: images, calibration: 20, validation: 10}"


def _images(folder: Path) -> Case:
    _, weights = timm_checkpoint(folder, ".pth")
    _image_folder(folder)
    return Case(f"{{timm: test_vit, weights: {weights.name}, classes: 3, input_size: 64}}", IMAGES, "images/test")


def _swin(folder: Path) -> Case:
    """A small random Swin (3 stages) as a cofc teacher file; its sub-models keep all 6 blocks."""
    from tests.models.test_swin import small_swin

    _, record = small_swin(classes=3)
    record["classes"] = ["zero", "one", "two"]  # the image folder's class folders
    save_teacher(folder / "swin.pt", record)
    _image_folder(folder)
    return Case("{checkpoint: swin.pt}", IMAGES, "images/test", objective=", min_layers: 6")


@pytest.mark.parametrize("family", ["bert", "mpnet", "gpt2", "t5", "vit", "swin"])
def test_own_teacher_and_data_build_and_answer_raw_inputs(family, tmp_path, monkeypatch):
    monkeypatch.setenv("COFC_MODEL_CACHE", str(tmp_path / "cache"))
    cases = {"vit": _images, "t5": _pairs, "swin": _swin}
    case = cases[family](tmp_path) if family in cases else _texts(tmp_path, family)
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(
        PLAN.format(
            family=family, teacher=case.teacher, dataset=case.dataset, port=free_port(), objective=case.objective
        )
    )

    profiled = run_cofc("profile", "--plan", str(plan_path), "--device", "a", "--count", "10")
    assert profiled.returncode == 0, profiled.stderr[-3000:]
    built = run_cofc("build", str(plan_path))
    assert built.returncode == 0, built.stderr[-3000:]
    report = load_report(tmp_path / "out")
    # The shipped bundles through ONNX Runtime give torch's fused accuracy (within 0.2 points).
    assert abs(report.fused.accuracy - report.fused.accuracy_torch) <= 0.002
    assert all(check.ok for check in report.export)

    answers = _cofc_run(tmp_path / "out" / "bundle", tmp_path / case.ask, case.text_column)
    plan = load_plan(plan_path)
    teacher = teacher_from_plan(plan)
    asked = case.asked or load_data(plan.dataset, teacher.expects).test.inputs
    assert len(answers) == len(asked)
    assert all(not a["degraded"] and "error" not in a for a in answers)
    # A device reads the user's files into the compiler's model inputs, without torch.
    bundles = [load_bundle(b) for b in (tmp_path / "out" / "bundle").iterdir()]
    device = Preprocessor.for_bundle(next(b for b in bundles if b.role == "central"))
    got, want = device(device.read(tmp_path / case.ask, case.text_column)), teacher.preprocess(asked)
    assert set(got) == set(want)
    for name in got:
        np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-6, rtol=0)
    # And the cluster answers them as the bundles' pipeline does in one process.
    with LocalPipeline(bundles) as pipeline:
        logits = pipeline(asked)
    np.testing.assert_allclose([a["logits"] for a in answers], logits, atol=1e-4, rtol=0)
    assert [a["label"] for a in answers] == [teacher.expects.classes[k] for k in logits.argmax(1)]
    if case.bench:
        _bench_answers_as_the_pipeline(tmp_path / "out", plan, teacher, bundles)


def _bench_answers_as_the_pipeline(out: Path, plan, teacher, bundles) -> None:
    """`cofc bench` sends the test split's samples (pairs, for a pair task) through the cluster:
    its accuracy is the in-process pipeline's on the same samples, nothing degraded."""
    bench = run_cofc("bench", str(out), "-n", "10")
    assert bench.returncode == 0, bench.stderr[-3000:]
    result = BenchResult.load(out)
    sample = load_data(plan.dataset, teacher.expects).test.take(10, seed=1)
    with LocalPipeline(bundles) as pipeline:
        predicted = pipeline(sample.inputs).argmax(1)
    assert result.requests == 10 and result.degraded == 0
    assert result.accuracy == pytest.approx(float(np.mean(predicted == np.asarray(sample.labels))))


def _cofc_run(bundles: Path, ask: Path, text_column: str) -> list[dict]:
    """A worker process for device b, then central answering `ask` with `cofc run --input`."""
    cofc = str(Path(sys.executable).with_name("cofc"))
    worker = subprocess.Popen(
        [cofc, "run", "--bundle", str(bundles / "b")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        central = subprocess.run(
            [cofc, "run", "--bundle", str(bundles / "a"), "--input", str(ask), "--text-column", text_column],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        worker.terminate()
        worker.wait(10)
    assert central.returncode == 0, central.stderr[-3000:]
    return [json.loads(line) for line in central.stdout.splitlines()]
