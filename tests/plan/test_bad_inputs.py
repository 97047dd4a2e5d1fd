"""Bad teacher folders and files and bad data, each refused by `cofc build --check PLAN` (run as a
user runs it) with exit code 1 and one line that names the file and what is wrong: no traceback,
and nothing written anywhere. The same plans with good inputs pass."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from cofc.compiler.models.teacher import teacher_from_plan
from cofc.compiler.plan import load_plan
from tests.helpers import TOKENIZER, estimated_profile, hf_model, run_cofc, save_folder, timm_checkpoint

PLAN = """\
name: bad-input
teacher: {TEACHER}
dataset: {DATASET}
devices:
  - {name: a, profile: PROFILE, memory_mb: 64, max_mflops: 500, link_mbps: 2, central: true}
  - {name: b, profile: PROFILE, memory_mb: 64, max_mflops: 500, link_mbps: 2}
objective: {delta: 0.1, initial: 2, iterations: 1}
output: out
"""
REVIEWS = "text,label\n" + "".join(f"review {i},{('negative', 'neutral', 'positive')[i % 3]}\n" for i in range(12))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """What the cases start from: a BERT classification folder (3 named classes), a timm
    checkpoint (test_vit, 3 classes, 64 px), a CSV of reviews, an image folder, a latency table."""
    root = tmp_path_factory.mktemp("good")
    save_folder(hf_model("bert"), root / "bert")
    _, weights = timm_checkpoint(root, ".safetensors")
    weights.rename(root / "vit.safetensors")
    (root / "reviews.csv").write_text(REVIEWS, encoding="utf-8")
    for part in ("train", "test"):
        for i, name in enumerate(("0", "1", "2")):
            (root / "images" / part / name).mkdir(parents=True)
            for j in range(4):
                Image.new("RGB", (40, 36), (80 * i, 20 * j, 90)).save(root / "images" / part / name / f"{j}.png")
    (root / "profile.json").write_text(json.dumps({"rows": [{"spec": {"layers": 1}, "ms": 1.0}]}))
    return root


def text_teacher(good: Path) -> str:
    return f"{{hf_classifier: {good / 'bert'}, input_size: 16}}"


def image_teacher(good: Path) -> str:
    return f"{{timm: test_vit, weights: {good / 'vit.safetensors'}, input_size: 64}}"


def data(key: str, path: Path | str) -> str:
    return f"{{{key}: {path}, calibration: 2, validation: 2}}"


def copy_folder(good: Path, case: Path, change: Callable[[Path], None]) -> Path:
    folder = case / "teacher"
    shutil.copytree(good / "bert", folder)
    change(folder)
    return folder


def edit_config(**changes) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        config.update(changes)
        (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))

    return change


def remove(*names: str) -> Callable[[Path], None]:
    return lambda folder: [(folder / n).unlink() for n in names]


def write(name: str, content: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(content)


def image_folder_with(good: Path, case: Path, change: Callable[[Path], None]) -> Path:
    root = case / "images"
    shutil.copytree(good / "images", root)
    change(root)
    return root


def text_file(case: Path, name: str, content: str | bytes) -> Path:
    path = case / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def texts(name: str, content: str | bytes) -> Case:
    """The good text teacher with this text file as its data."""
    return lambda c, g: (text_teacher(g), data("text_file", text_file(c, name, content)))


def images(change: Callable[[Path], None]) -> Case:
    """The good image teacher with a changed copy of the good image folder."""
    return lambda c, g: (image_teacher(g), data("image_folder", image_folder_with(g, c, change)))


# (what is wrong, how to make it: (case folder, good inputs) -> (teacher, dataset), the file the
# message names, words in the message)
Case = Callable[[Path, Path], tuple[str, str]]
CASES: list[tuple[str, Case, str, str]] = [
    (
        "folder without config.json",
        lambda c, g: (
            f"{{hf_classifier: {copy_folder(g, c, remove('config.json'))}}}",
            data("text_file", g / "reviews.csv"),
        ),
        "teacher/config.json",
        "missing; ",
    ),
    (
        "unknown model_type",
        lambda c, g: (
            f"{{hf_classifier: {copy_folder(g, c, edit_config(model_type='roberta'))}}}",
            data("text_file", g / "reviews.csv"),
        ),
        "teacher/config.json",
        "model_type 'roberta' is not one cofc reads (bert, gpt2, mpnet)",
    ),
    (
        "classification folder without id2label",
        lambda c, g: (
            f"{{hf_classifier: {copy_folder(g, c, edit_config(id2label=None, label2id=None))}}}",
            data("text_file", g / "reviews.csv"),
        ),
        "teacher",
        "config.json has no id2label, so 2 classes",
    ),
    (
        "backbone without a classification head",
        lambda c, g: (f"{{hf_classifier: {resolve(TOKENIZER)}}}", data("text_file", g / "reviews.csv")),
        "config.json",
        "is not a sequence-classification model",
    ),
    (
        "folder without a tokenizer",
        lambda c, g: (
            f"{{hf_classifier: {copy_folder(g, c, remove('tokenizer.json', 'tokenizer_config.json'))}}}",
            data("text_file", g / "reviews.csv"),
        ),
        "teacher",
        "no tokenizer: neither tokenizer.json nor vocabulary files",
    ),
    (
        "config.json that is not JSON",
        lambda c, g: (
            f"{{hf_classifier: {copy_folder(g, c, write('config.json', '{model_type: bert'))}}}",
            data("text_file", g / "reviews.csv"),
        ),
        "teacher/config.json",
        "not readable JSON",
    ),
    (
        "checkpoint of another timm model",
        lambda c, g: (
            f"{{timm: deit_tiny_patch16_224, weights: {g / 'vit.safetensors'}}}",
            data("image_folder", g / "images"),
        ),
        "vit.safetensors",
        "does not fit timm model deit_tiny_patch16_224: ",
    ),
    (
        "unknown timm name",
        lambda c, g: (f"{{timm: vit_enormous, weights: {g / 'vit.safetensors'}}}", data("image_folder", g / "images")),
        "vit_enormous",
        "timm has no model named",
    ),
    (
        "corrupt safetensors file",
        lambda c, g: (
            f"{{timm: test_vit, weights: {text_file(c, 'w.safetensors', b'not tensors')}}}",
            data("image_folder", g / "images"),
        ),
        "w.safetensors",
        "not a readable safetensors file",
    ),
    (
        "CSV without the text column",
        texts("r.csv", REVIEWS.replace("text,", "body,")),
        "r.csv",
        "no column 'text' (columns: body, label); set dataset.text_column",
    ),
    (
        "label the teacher does not know",
        texts("r.csv", REVIEWS + "meh,mixed\n"),
        "r.csv line 14",
        "label 'mixed' is not one of the teacher's classes (negative, neutral, positive)",
    ),
    (
        "text file in another encoding",
        texts("r.tsv", "text\tlabel\ncafé\tneutral\n".encode("cp1252")),
        "r.tsv",
        "not UTF-8 text (byte 0xe9 at offset 14); save it as UTF-8",
    ),
    ("empty text file", texts("r.jsonl", ""), "r.jsonl", "empty file"),
    (
        "JSONL line that is not an object",
        texts("r.jsonl", '{"text": "a", "label": "neutral"}\n"b"\n'),
        "r.jsonl line 2",
        "not a JSON object",
    ),
    (
        "empty class folder",
        images(lambda r: [p.unlink() for p in (r / "train" / "1").iterdir()]),
        "images/train/1",
        "empty class folder",
    ),
    (
        "unreadable image",
        images(lambda r: (r / "test" / "2" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")),
        "images/test/2/1.png",
        "not a readable image",
    ),
    (
        "image folder for a text teacher",
        lambda c, g: (text_teacher(g), data("image_folder", g / "images")),
        "images",
        "an image folder, but the teacher takes texts",
    ),
]


def resolve(source: str) -> str:
    from cofc.compiler.models.adapters._hf import resolve_source

    return resolve_source(source)


def snapshot(*roots: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for root in roots for p in root.rglob("*")}


def write_plan(case: Path, teacher: str, dataset: str, profile: Path) -> Path:
    plan = case / "plan.yaml"
    plan.write_text(PLAN.replace("{TEACHER}", teacher).replace("{DATASET}", dataset).replace("PROFILE", str(profile)))
    return plan


def check(case: Path, good: Path, teacher: str, dataset: str, profile: Path | None = None):
    plan = write_plan(case, teacher, dataset, profile or good / "profile.json")
    return plan, run_cofc("build", "--check", str(plan), cwd=case, env={"COFC_MODEL_CACHE": str(case / "cache")})


def test_table_has_enough_cases():
    assert len(CASES) >= 10


@pytest.mark.slow  # `cofc build --check` in a new process: 5-10 s a case on two cores
@pytest.mark.parametrize("what,make,file,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_file(what, make, file, words, good, tmp_path):
    teacher, dataset = make(tmp_path, good)
    before = snapshot(tmp_path, good)
    plan, result = check(tmp_path, good, teacher, dataset)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    message = lines[0]
    assert message.startswith(f"cofc: error: {plan}:")
    assert file in message and words in message, message
    before[str(plan)] = plan.stat().st_mtime_ns
    assert snapshot(tmp_path, good) == before, "a refused plan must not write files"


@pytest.mark.slow  # `cofc build --check` in a new process: 5-10 s a case on two cores
@pytest.mark.parametrize("kind", ["text", "image"])
def test_the_good_inputs_pass(kind, good, tmp_path):
    """The cases above fail for the reason they name: unchanged, the same plans pass."""
    teacher, dataset = (
        (text_teacher(good), data("text_file", good / "reviews.csv"))
        if kind == "text"
        else (image_teacher(good), data("image_folder", good / "images"))
    )
    # --check predicts from each device's table, so this one needs a table of its teacher's shape
    loaded = teacher_from_plan(load_plan(write_plan(tmp_path, teacher, dataset, good / "profile.json")))
    profile = estimated_profile(tmp_path / "profile.json", loaded.family, loaded.spec)
    _, result = check(tmp_path, good, teacher, dataset, profile)
    assert result.returncode == 0, result.stderr
    assert "teacher accuracy on" in result.stdout and "3 classes" in result.stdout
    assert "a answers in" in result.stdout and "b answers in" in result.stdout
    assert "predicted: no decomposition answers sooner than" in result.stdout
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow  # `cofc build --check` in a new process
def test_a_table_that_names_no_teacher_is_one_line_naming_it(good, tmp_path):
    """The plan loader reads only a table's rows; the predictor needs to know what it measured."""
    _, result = check(tmp_path, good, text_teacher(good), data("text_file", good / "reviews.csv"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"cofc: error: {tmp_path / 'plan.yaml'}:5: devices[0].profile: {good / 'profile.json'} does not say which "
        "teacher it measured (provenance.teacher); capture it with 'cofc profile'"
    ]
