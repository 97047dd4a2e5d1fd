"""Decomposition, boosting weights and fusion: the properties the method rests on."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.calibration.booster import Distill, update_weights
from cofc.compiler.models.decompose import decompose, plan_slices, snake_draft
from cofc.compiler.models.fusion import Aggregator, average_logits, device_feature, majority_vote
from cofc.compiler.scoring.importance import Importance, rank_units
from cofc.compiler.planning.spec import SubModelSpec

from tests.helpers import raw_inputs, small_record


def random_importance(layers=6, heads=6, mlp=192, dim=96, seed=0) -> Importance:
    rng = np.random.default_rng(seed)
    return Importance(rng.random((layers, heads)), rng.random((layers, mlp)), rng.random(dim), rng.random(layers))


def test_snake_draft_deals_fairly_and_disjointly():
    scores = np.arange(12, 0, -1, dtype=float)  # unit 0 is the best
    dealt = snake_draft(scores, [3, 3, 3])
    assert dealt == [(0, 5, 6), (1, 4, 7), (2, 3, 8)]  # 1,2,3,3,2,1,1,2,3: each gets one of the top 3
    assert snake_draft(scores, [1, 2, 0]) == [(0,), (1, 2), ()]
    with pytest.raises(ValueError):
        snake_draft(scores, [5, 5, 5])


@pytest.mark.parametrize("seed", range(5))
def test_slices_are_disjoint_where_c2_to_c4_require(seed):
    rng = np.random.default_rng(seed)
    imp = random_importance(seed=seed)
    policy = [SubModelSpec(int(l), 32, (2,) * int(l), (64,) * int(l)) for l in rng.integers(1, 7, size=3)]
    slices = plan_slices(policy, imp)
    channels = [set(s.channels) for s in slices]
    assert all(not (a & b) for a, b in itertools.combinations(channels, 2))  # C2: disjoint channels
    for layer in range(6):
        holders = [s for s in slices if layer in s.layers]
        heads = [set(s.heads[s.layers.index(layer)]) for s in holders]
        neurons = [set(s.neurons[s.layers.index(layer)]) for s in holders]
        for group in (heads, neurons):  # C3, C4: disjoint within each teacher layer
            assert all(not (a & b) for a, b in itertools.combinations(group, 2))
    for s, spec in zip(slices, policy):
        assert s.spec == spec
        assert list(s.layers) == sorted(np.argsort(-imp.layers)[:spec.layers])  # most important layers


def test_policy_needing_more_heads_than_a_layer_has_is_refused():
    policy = [SubModelSpec(1, 16, (4,), (8,)), SubModelSpec(1, 16, (4,), (8,))]
    with pytest.raises(ValueError, match="teacher layer"):
        plan_slices(policy, random_importance())


def test_giving_everything_to_one_submodel_reproduces_the_teacher(family):
    torch.manual_seed(0)
    adapter = get_adapter(family)
    record = small_record(family)
    teacher = adapter.build_teacher(record).eval()
    texts_or_images = raw_inputs(family, n=4)
    imp = rank_units(adapter, teacher, record, texts_or_images, np.array([0, 1, 2, 3]), batch=2)
    assert imp.heads.shape == (3, 6) and imp.neurons.shape == (3, 192) and (imp.heads > 0).all()
    (student,) = decompose(adapter, teacher, [adapter.spec(teacher).full()], imp)
    x = adapter.preprocess(record, texts_or_images)
    with torch.no_grad():
        torch.testing.assert_close(adapter.token_features(student, x), adapter.token_features(teacher, x),
                                   atol=1e-5, rtol=0)


def test_boosting_weights_follow_both_readings_of_eq_13():
    w = np.ones(4)
    losses = np.array([0.0, 0.0, 1.0, 2.0])
    m = 4
    # By hand: w·exp(±(1 − 1/M)·L) = exp(±0.75·L), then divided by its mean.
    up = np.exp(0.75 * losses)
    printed = np.exp(-0.75 * losses)
    np.testing.assert_allclose(update_weights(w, losses, "up", clip=100), up / up.mean())
    np.testing.assert_allclose(update_weights(w, losses, "printed", clip=100), printed / printed.mean())
    assert update_weights(w, losses, "up")[3] > 1 > update_weights(w, losses, "printed")[3]
    # Clipping keeps any one sample from taking over.
    extreme = update_weights(np.ones(m), np.array([0.0, 0.0, 0.0, 50.0]), "up", clip=3.0)
    assert extreme.max() / extreme.min() <= 9.0 + 1e-9 and extreme.mean() == pytest.approx(1.0)


def test_distillation_loss_is_eq_14_plus_the_soft_term_by_hand():
    student = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    teacher = np.array([[1.0, 3.0, 0.0], [0.0, 2.0, 1.0]])
    labels = np.array([0, 1])
    log_softmax = lambda z: z - np.log(np.exp(z).sum(1, keepdims=True))  # noqa: E731
    ls = log_softmax(student)
    # Eq. 14: the teacher's hard labels are classes 1 and 1.
    eq14 = 0.5 * (-ls[[0, 1], labels] - ls[[0, 1], [1, 1]])
    t = 2.0
    p_t, log_p_s = np.exp(log_softmax(teacher / t)), log_softmax(student / t)
    soft = t * t * (p_t * (np.log(p_t) - log_p_s)).sum(1)
    as_tensors = [torch.tensor(student), torch.tensor(labels), torch.tensor(teacher)]
    np.testing.assert_allclose(Distill()(*as_tensors).numpy(), eq14, rtol=1e-12)
    np.testing.assert_allclose(Distill(soft=0.5, temperature=t)(*as_tensors).numpy(), eq14 + 0.5 * soft, rtol=1e-12)
    # The soft term vanishes when the student's distribution is the teacher's.
    same = Distill(soft=1.0)(torch.tensor(teacher), torch.tensor(labels), torch.tensor(teacher))
    np.testing.assert_allclose(same.numpy(), Distill()(torch.tensor(teacher), torch.tensor(labels),
                                                       torch.tensor(teacher)).numpy(), atol=1e-12)


def _aggregator(dims=(8, 4, 6), out=10, classes=5):
    torch.manual_seed(0)
    return Aggregator(dims, out, torch.nn.Linear(out, classes)).eval()


def test_pooling_before_concat_equals_eq_2():
    agg = _aggregator()
    tokens = [torch.randn(3, 7, d) for d in agg.dims]
    weights = torch.rand(3, 7)
    weights = weights / weights.sum(1, keepdim=True)  # any average: plain mean or padding mask
    mask = torch.tensor([[1.0, 1, 1], [1, 0, 1], [0, 1, 0]])
    pooled = torch.cat([(t * weights.unsqueeze(-1)).sum(1) for t in tokens], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(agg(pooled, mask), agg.fuse_tokens(tokens, weights, mask), atol=1e-5, rtol=1e-5)


def test_aggregator_handles_every_missing_subset():
    agg = _aggregator()
    feats = torch.randn(2, sum(agg.dims))
    for present in itertools.product([0.0, 1.0], repeat=3):
        if not any(present):
            continue
        mask = torch.tensor([present, present])
        out = agg(feats, mask)
        assert torch.isfinite(out).all()
        # What an absent device would have sent has no effect at all.
        noisy = feats.clone()
        for k, d0 in enumerate(np.cumsum([0, *agg.dims[:-1]])):
            if not present[k]:
                noisy[:, d0:d0 + agg.dims[k]] = 1e6
        torch.testing.assert_close(agg(noisy, mask), out)


def test_comparison_fusions():
    a = torch.tensor([[2.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0]])
    c = torch.tensor([[0.0, 1.1, 0.0]])
    assert majority_vote([a, b, c]).argmax(-1).item() == 1
    assert average_logits([a, b, c]).argmax(-1).item() == 1
    assert average_logits([a, b]).argmax(-1).item() == 0


def test_device_feature_kinds(family):
    adapter = get_adapter(family)
    record = small_record(family)
    model = adapter.build_teacher(record).eval()
    x = adapter.preprocess(record, raw_inputs(family))
    with torch.no_grad():
        tokens = adapter.token_features(model, x)
        torch.testing.assert_close(device_feature(adapter, model, x, "first"), tokens[:, 0])
        torch.testing.assert_close(device_feature(adapter, model, x, "pool"), adapter.pool(model, tokens, x))


def test_validation_loss_proxy_ranks_capacity_and_caches():
    from cofc.compiler.scoring.proxy import ValidationLoss, refit_head_loss
    # The refitted head scores features that carry the labels far better than noise.
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=gen)
    informative = torch.nn.functional.one_hot(labels, 4).float() + 0.3 * torch.randn(400, 4, generator=gen)
    noise = torch.randn(400, 4, generator=gen)
    assert refit_head_loss(informative, labels, 4) < 0.5 < 1.2 < refit_head_loss(noise, labels, 4)

    torch.manual_seed(0)
    adapter = get_adapter("vit")
    record = small_record("vit")
    teacher = adapter.build_teacher(record).eval()
    images = np.random.default_rng(0).integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    y = np.random.default_rng(1).integers(0, 5, size=64)
    imp = rank_units(adapter, teacher, record, images, y, batch=32)
    proxy = ValidationLoss(adapter, teacher, record, imp, images, y)
    small = (SubModelSpec(1, 16, (1,), (8,)),)
    first = proxy(small)
    assert np.isfinite(first) and proxy(small) == first and len(proxy.cache) == 1
