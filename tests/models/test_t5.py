"""The T5 family (Flan-T5 encoders): ragged sub-models, exact slicing (per-layer bias tables cut
from block 0's shared table), FLOPs and parameters of a gated, bias-free block, ONNX parity, and
teachers from a `save_pretrained` folder. No T5 weights install here: small random configs, the
MiniLM package's tokenizer (its ids fit the configs' vocabulary)."""

from __future__ import annotations

import os

import pytest
import torch

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.decompose import cut
from cofc.compiler.planning.slices import WeightSlices
from cofc.compiler.planning.spec import SubModelSpec, parameters
from cofc.errors import CofcError
from tests.helpers import TOKENIZER, assert_flops_counted, assert_onnx_parity

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RAGGED = SubModelSpec(layers=2, dim=48, heads=(1, 4), mlp=(7, 150))
TEXTS = ["oil prices rose sharply", "the company agreed to acquire its rival for cash", "wheat exports fell", "x"]
CONFIG = dict(
    vocab_size=30522,
    d_model=96,
    d_kv=16,
    num_heads=6,
    d_ff=192,
    num_layers=3,
    feed_forward_proj="gated-gelu",  # Flan-T5's
    relative_attention_num_buckets=32,
    pad_token_id=0,
)


def small_t5_record(**arch) -> dict:
    return {
        "family": "t5",
        "arch": {"config": CONFIG, "num_classes": 5, **arch},
        "preprocess": {"kind": "text", "tokenizer": TOKENIZER, "max_length": 16},
        "classes": list("abcde"),
    }


def teacher(record: dict | None = None):
    """The small teacher with every weight drawn N(0, 0.2) (random init keeps the bias at ±0.02
    and the MLP tiny: a head given another head's bias column must change the output visibly)."""
    torch.manual_seed(0)
    adapter, record = get_adapter("t5"), record or small_t5_record()
    model = adapter.build_teacher(record).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return adapter, model, record


def bias_tables(model) -> list[torch.Tensor]:
    return [b.layer[0].SelfAttention.relative_attention_bias.weight for b in model.backbone.encoder.block]


def test_ragged_submodel_has_the_specs_shape():
    adapter, model, record = teacher()
    student = adapter.build_submodel(model, RAGGED).eval()
    x = adapter.preprocess(record, TEXTS[:3])
    assert adapter.token_features(student, x).shape == (3, 16, 48)
    assert adapter.logits(student, x).shape == (3, 5)
    assert [tuple(t.shape) for t in bias_tables(student)] == [(32, 1), (32, 4)]
    # No biases, gated MLP, RMSNorm: `parameters` counts them so; bias tables are outside it.
    base = adapter.spec(model)
    assert sum(p.numel() for p in student.parameters()) == parameters(RAGGED, base) + 32 * sum(RAGGED.heads)
    assert sum(p.numel() for p in model.parameters()) == parameters(base.full(), base) + 32 * 6


def test_full_slice_reproduces_teacher():
    adapter, model, record = teacher()
    full = WeightSlices.full(adapter.spec(model))
    (student,) = cut(adapter, model, [full])
    x = adapter.preprocess(record, TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(
            adapter.token_features(student, x), adapter.token_features(model, x), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(adapter.logits(student, x), adapter.logits(model, x), atol=1e-5, rtol=0)


def test_partial_slice_takes_the_named_weights():
    adapter, model, _ = teacher()
    channels = list(range(1, 96, 2))
    slices = WeightSlices(layers=(2, 0), channels=tuple(channels), heads=((5,), (0, 3)), neurons=((0, 9, 100), (191,)))
    (student,) = cut(adapter, model, [slices])
    t, s = model.state_dict(), student.state_dict()
    same = lambda a, b: torch.testing.assert_close(a, b, atol=0, rtol=0)  # noqa: E731
    shared = t["backbone.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    for k, (j, heads, neurons) in enumerate(zip(slices.layers, slices.heads, slices.neurons, strict=True)):
        rows, neurons = [h * 16 + i for h in heads for i in range(16)], list(neurons)
        tp, sp = f"backbone.encoder.block.{j}.layer.", f"backbone.encoder.block.{k}.layer."
        for name in ("q", "k", "v"):
            same(s[sp + f"0.SelfAttention.{name}.weight"], t[tp + f"0.SelfAttention.{name}.weight"][rows][:, channels])
        same(s[sp + "0.SelfAttention.o.weight"], t[tp + "0.SelfAttention.o.weight"][channels][:, rows])
        same(s[sp + "0.SelfAttention.relative_attention_bias.weight"], shared[:, list(heads)])
        for name in ("wi_0", "wi_1"):
            same(
                s[sp + f"1.DenseReluDense.{name}.weight"],
                t[tp + f"1.DenseReluDense.{name}.weight"][neurons][:, channels],
            )
        same(s[sp + "1.DenseReluDense.wo.weight"], t[tp + "1.DenseReluDense.wo.weight"][channels][:, neurons])
        same(s[sp + "1.layer_norm.weight"], t[tp + "1.layer_norm.weight"][channels])
    same(s["backbone.shared.weight"], t["backbone.shared.weight"][:, channels])
    same(s["classifier.weight"], t["classifier.weight"][:, channels])


def test_each_layer_keeps_the_bias_of_its_own_heads():
    """Different heads in every layer, all else whole: the sub-model computes what the teacher
    computes with the other heads switched off (zeroed at the output projection), which holds
    only if each layer adds its own heads' bias columns."""
    adapter, model, record = teacher()
    kept = [(1, 4), (0, 2, 5), (3,)]
    slices = WeightSlices(tuple(range(3)), tuple(range(96)), tuple(kept), (tuple(range(192)),) * 3)
    (student,) = cut(adapter, model, [slices])
    x = adapter.preprocess(record, TEXTS)
    hooks = []
    for block, heads in zip(model.backbone.encoder.block, kept, strict=True):
        mask = torch.zeros(6)
        mask[list(heads)] = 1.0
        scale = mask.repeat_interleave(16)
        hooks.append(block.layer[0].SelfAttention.o.register_forward_pre_hook(lambda m, a, s=scale: (a[0] * s,)))
    try:
        with torch.no_grad():
            want = adapter.token_features(model, x)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        torch.testing.assert_close(adapter.token_features(student, x), want, atol=1e-5, rtol=0)
        bias_tables(student)[0].copy_(bias_tables(student)[1][:, :2])  # layer 1's heads (0, 2) instead
        assert (adapter.token_features(student, x) - want).abs().max() > 1e-3


def test_flops_match_torch_counter():
    """ω counts the gated MLP's two input projections. Eager attention: torch's counter does not
    see the matmuls inside SDPA, which T5 runs by default."""
    adapter, model, record = teacher()
    model.backbone.set_attn_implementation("eager")  # sub-models copy the teacher's config
    assert_flops_counted(adapter, model, adapter.preprocess(record, TEXTS[:1]), RAGGED)


def test_backbone_and_teacher_onnx_parity_with_dynamic_batch(tmp_path):
    adapter, model, record = teacher()
    student = adapter.build_submodel(model, RAGGED).eval()
    example = adapter.preprocess(record, TEXTS[:2])
    probe = adapter.preprocess(record, TEXTS + TEXTS[:1])  # another batch size than exported
    features = assert_onnx_parity(adapter, model, student, example, probe, tmp_path)
    assert features.shape == (5, 48)


def _saved(tmp_path, whole: bool):
    """A user's T5 saved with save_pretrained: the encoder alone, or a whole encoder-decoder."""
    from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration

    torch.manual_seed(1)
    model = (T5ForConditionalGeneration if whole else T5EncoderModel)(T5Config(**CONFIG)).eval()
    model.save_pretrained(tmp_path / "t5")
    return (model.encoder if whole else model), tmp_path / "t5"


@pytest.mark.parametrize("whole", [False, True])
def test_saved_folder_is_the_backbone(tmp_path, whole):
    """A folder's encoder computes the teacher's tokens (the decoder of a whole model is ignored)."""
    original, folder = _saved(tmp_path, whole)
    record = small_t5_record()
    record["arch"] = {"source": str(folder), "num_classes": 3}
    adapter = get_adapter("t5")
    model = adapter.build_teacher(record).eval()
    x = adapter.preprocess(record, TEXTS)
    with torch.no_grad():
        want = original(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).last_hidden_state
        torch.testing.assert_close(adapter.token_features(model, x), want, atol=1e-6, rtol=0)


def test_bad_checkpoint_is_one_line(tmp_path):
    _, folder = _saved(tmp_path, False)
    (folder / "model.safetensors").write_bytes(b"not a weights file")
    record = small_t5_record()
    record["arch"] = {"source": str(folder), "num_classes": 3}
    with pytest.raises(CofcError) as info:
        get_adapter("t5").build_teacher(record)
    message = str(info.value)
    assert "\n" not in message and "T5EncoderModel" in message and str(folder) in message


def test_another_familys_folder_is_refused(tmp_path):
    """A BERT folder given as a T5 source: transformers would start every T5 weight at random."""
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path / "bert")
    record = small_t5_record()
    record["arch"] = {"source": str(tmp_path / "bert"), "num_classes": 3}
    with pytest.raises(CofcError, match="model_type is 'bert', not 't5'") as info:
        get_adapter("t5").build_teacher(record)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_cofc_teacher_fine_tunes_a_t5_on_text_pairs(tmp_path):
    """`cofc teacher --family t5 --pair-column`: the file it writes takes pairs, as the device will."""
    from cofc.compiler.models.teacher import load_teacher
    from tests.helpers import run_cofc, save_folder

    model, folder = _saved(tmp_path, False)
    save_folder(model, folder)  # the MiniLM tokenizer beside the weights
    rows = ["premise,hypothesis,label"] + [
        f"{a},{b},{i % 2}" for i, (a, b) in enumerate(zip(TEXTS * 6, TEXTS[::-1] * 6, strict=True))
    ]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    args = ["--family", "t5", "--source", str(folder), "--text-file", str(tmp_path / "pairs.csv")]
    args += ["--text-column", "premise", "--pair-column", "hypothesis", "--input-size", "16", "--layers", "1"]
    made = run_cofc(
        "teacher", *args, "--epochs", "1", "--batch", "8", "--device", "cpu", "--out", str(tmp_path / "t.pt")
    )
    assert made.returncode == 0, made.stderr[-2000:]
    assert "test accuracy" in made.stdout
    loaded = load_teacher(tmp_path / "t.pt")
    assert loaded.record["preprocess"]["pair_column"] == "hypothesis"
    assert loaded.logits(loaded.preprocess([(TEXTS[0], TEXTS[1])])).shape == (1, 2)
