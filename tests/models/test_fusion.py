"""The aggregator (eq. 2) and the comparison fusions."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from cofc.compiler.models.fusion import Aggregator, average_logits, majority_vote


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
                noisy[:, d0 : d0 + agg.dims[k]] = 1e6
        torch.testing.assert_close(agg(noisy, mask), out)


def test_comparison_fusions():
    a = torch.tensor([[2.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0]])
    c = torch.tensor([[0.0, 1.1, 0.0]])
    assert majority_vote([a, b, c]).argmax(-1).item() == 1
    assert average_logits([a, b, c]).argmax(-1).item() == 1
    assert average_logits([a, b]).argmax(-1).item() == 0
