"""Calibrate a decomposed teacher and measure it: Algorithm 1 lines 11–15 and the aggregator.

    decompose -> boost each sub-model (eq. 13–14; with `layer_distill`, each block also regresses
    onto the teacher block it was cut from) -> train the aggregator on their pooled
    features with whole devices dropped at random -> optionally fine-tune everything jointly
    -> fit the final aggregator on a fusion split

The fusion split is training data that no sub-model was calibrated on (stacked
generalisation): on their own calibration samples the sub-models are near perfect, so an
aggregator fitted there learns nothing about how to weigh their real mistakes, and on Reuters
R8 it fused worse than plain averaging; fitted on unseen samples it fuses better. A plan may
hold none out instead (`calibration.held_out_fusion: false`, `Prepared.calibration_sets`): on
the Fashion-MNIST ViT, whose sub-models gain more from more calibration images than its
aggregator loses to fitting on seen ones, that fuses better (docs/experiments/calibration.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cofc.compiler.calibration.booster import Distill, Targets, TrainConfig, boost, eq14, train_weighted
from cofc.compiler.calibration.layer_distill import teacher_targets, with_layer_distill
from cofc.compiler.models.adapters.base import Inputs, ModelAdapter
from cofc.compiler.models.batches import batched, preprocess_all
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.decompose import cut
from cofc.compiler.models.fusion import Aggregator, device_feature, submodel_logits
from cofc.compiler.models.teacher import Teacher
from cofc.compiler.models.torch_device import CPU
from cofc.compiler.plan import CalibrationPlan
from cofc.compiler.planning.slices import Importance, plan_slices
from cofc.compiler.planning.spec import SubModelSpec

AGGREGATOR_EPOCHS = 20
AGGREGATOR_BATCH = 256
AGGREGATOR_LR = 3e-3


@dataclass(frozen=True)
class CalibrationConfig:
    """The plan's calibration settings (plan/schema.py holds their defaults) as the training
    loops take them, and the constants that are not plan settings."""

    feature: str  # "pool" (eq. 2) or "first" (class token)
    reading: str  # eq. 13 reading: "up" or "printed"
    distill: Distill  # eq. 14, with or without the soft-label term
    layer_distill: float  # β of the hidden-state term while boosting (layer_distill.py); 0: none
    boost: TrainConfig
    joint: TrainConfig | None  # None: no joint fine-tuning
    drop: float  # chance that a device's feature is dropped while training the aggregator
    seed: int
    aggregator_epochs: int = AGGREGATOR_EPOCHS

    @classmethod
    def from_plan(cls, c: CalibrationPlan, seed: int) -> CalibrationConfig:
        return cls(
            feature=c.feature,
            reading=c.reading,
            drop=c.feature_dropout,
            seed=seed,
            distill=Distill(soft=c.soft_labels, temperature=c.temperature),
            layer_distill=c.layer_distill,
            boost=TrainConfig(epochs=c.epochs, weight_decay=c.weight_decay),
            joint=(
                TrainConfig(epochs=c.joint_epochs, lr=c.joint_lr, weight_decay=c.weight_decay)
                if c.joint_epochs
                else None
            ),
        )


@dataclass
class Calibrated:
    policy: tuple[SubModelSpec, ...]
    submodels: list[nn.Module]
    aggregator: Aggregator  # trained with feature dropout: the one that ships
    plain_aggregator: Aggregator  # trained without, for the report's contrast
    feature: str


def random_mask(n: int, devices: int, drop: float, gen: torch.Generator) -> torch.Tensor:
    """Per sample, drop each device with probability `drop`, but never all of them."""
    mask = (torch.rand(n, devices, generator=gen) >= drop).float()
    empty = mask.sum(1) == 0
    mask[empty, torch.randint(devices, (int(empty.sum()),), generator=gen)] = 1.0
    return mask


def train_aggregator(
    agg: Aggregator,
    features: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    config: CalibrationConfig,
    drop: float,
    device: torch.device = CPU,
) -> Aggregator:
    """Fit eq. 2's map on the devices' pooled features, each device's feature dropped with
    probability `drop` (the config's feature dropout, or 0 for the report's contrast). `agg` is
    on `device`; the features, one small vector per sample, move there whole."""
    distill, epochs, batch, lr = config.distill, config.aggregator_epochs, AGGREGATOR_BATCH, AGGREGATOR_LR
    features, labels, teacher_logits = features.to(device), labels.to(device), teacher_logits.to(device)
    gen = torch.Generator().manual_seed(config.seed)
    n, devices = len(labels), len(agg.dims)
    opt = torch.optim.AdamW(agg.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * -(-n // batch))
    agg.train()
    for _ in tqdm(range(epochs), desc="training the aggregator", leave=False):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            mask = random_mask(len(idx), devices, drop, gen) if drop > 0 else torch.ones(len(idx), devices)
            loss = distill(agg(features[idx], mask.to(device)), labels[idx], teacher_logits[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return agg.eval()


class FusedModel(nn.Module):
    """Sub-models and aggregator as one module, for joint fine-tuning and in-process evaluation."""

    def __init__(
        self, adapter: ModelAdapter, submodels: Sequence[nn.Module], aggregator: Aggregator | None, feature: str
    ):
        """`aggregator` None: a model for `features` alone (the aggregator is fitted on them)."""
        super().__init__()
        self.adapter, self.feature = adapter, feature
        self.submodels = nn.ModuleList(submodels)
        self.aggregator = aggregator

    def features(self, inputs: Inputs) -> torch.Tensor:
        return torch.cat([device_feature(self.adapter, m, inputs, self.feature) for m in self.submodels], dim=1)

    def forward(self, inputs: Inputs, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            first = next(iter(inputs.values()))
            mask = torch.ones(len(first), len(self.submodels), device=first.device)
        return self._fuse(self.features(inputs), mask)

    def all_logits(self, inputs: Inputs, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The fused logits and each sub-model's own, from one pass through the backbones."""
        feats = [device_feature(self.adapter, m, inputs, self.feature) for m in self.submodels]
        own = [self.adapter.head(m)(f) for m, f in zip(self.submodels, feats, strict=True)]
        return self._fuse(torch.cat(feats, dim=1), mask), own

    def _fuse(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.aggregator is None:
            raise RuntimeError("this FusedModel was built for its features alone: it has no aggregator")
        return self.aggregator(features, mask)


def calibrate(
    teacher: Teacher,
    policy: Sequence[SubModelSpec],
    importance: Importance,
    train: Split,
    config: CalibrationConfig,
    fusion: Split | None = None,
    device: torch.device = CPU,
) -> Calibrated:
    """Calibrate on `train`, training on `device`; fit the final aggregators on `fusion` when
    given (stacked generalisation, above), else on the calibration samples. The modules come back
    on the CPU."""
    torch.manual_seed(config.seed)
    adapter = teacher.adapter
    inputs = preprocess_all(teacher, train.inputs)
    y = torch.as_tensor(train.labels)
    distill = config.distill
    slices = plan_slices(policy, importance)
    submodels = [m.to(device) for m in cut(adapter, teacher.model, slices)]
    own_loss = eq14(lambda m, x: submodel_logits(adapter, m, x, config.feature), distill)
    losses = [own_loss] * len(slices)
    layers: list[int] = []
    if config.layer_distill:
        layers = sorted({j for s in slices for j in s.layers})
        losses = [with_layer_distill(adapter, s, config.layer_distill, own_loss) for s in slices]
    targets = teacher_targets(adapter, teacher.model, inputs, layers, device=device)
    t_logits = targets["logits"]
    boost(submodels, losses, inputs, y, targets, config.boost, config.reading, config.seed, device)
    del targets  # the teacher's block outputs: most of the memory, and boosting is their only use

    def fit_aggregators(x: Inputs, y: torch.Tensor, t: torch.Tensor) -> tuple[Aggregator, Aggregator]:
        feats = batched(FusedModel(adapter, submodels, None, config.feature).features, x, device=device)
        base = teacher.spec
        dims = [base.feature_dim(m_spec.dim) for m_spec in policy]
        fresh = lambda: Aggregator(dims, base.feature_dim(base.dim), adapter.head(teacher.model)).to(device)  # noqa: E731
        return (
            train_aggregator(fresh(), feats, y, t, config, config.drop, device),
            train_aggregator(fresh(), feats, y, t, config, 0.0, device),
        )

    aggregator, plain = fit_aggregators(inputs, y, t_logits)
    if config.joint is not None:
        fused = FusedModel(adapter, submodels, aggregator, config.feature)
        gen = torch.Generator().manual_seed(config.seed + 99)

        def joint_loss(model: FusedModel, x: Inputs, y: torch.Tensor, t: Targets) -> torch.Tensor:
            """Fused loss plus the mean of each sub-model's own loss, so that their own heads (used
            alone, averaged, voted) follow their backbones; the feature dropout stays on, with a
            fresh random mask every batch."""
            mask = random_mask(len(y), len(policy), config.drop, gen).to(y.device)
            fused_logits, own = model.all_logits(x, mask)
            logits = t["logits"]
            return distill(fused_logits, y, logits) + sum(distill(o, y, logits) for o in own) / len(own)

        train_weighted(
            fused,
            joint_loss,
            inputs,
            y,
            {"logits": t_logits},
            np.ones(len(y)),
            config.joint,
            config.seed,
            desc="fine-tuning sub-models and aggregator jointly",
            device=device,
        )
    if fusion is not None:
        x = preprocess_all(teacher, fusion.inputs)
        t_fusion = teacher_targets(adapter, teacher.model, x, [], device=device)["logits"]
        aggregator, plain = fit_aggregators(x, torch.as_tensor(fusion.labels), t_fusion)
    elif config.joint is not None:
        _, plain = fit_aggregators(inputs, y, t_logits)  # the contrast sees the fine-tuned features too
    return Calibrated(tuple(policy), [m.cpu() for m in submodels], aggregator.cpu(), plain.cpu(), config.feature)
