"""`cofc teacher`: make a fair teacher from a pretrained backbone by fine-tuning its top layers and
a task head on the user's training split.

A teacher that is only a head on frozen features understates what the backbone can do, and a
split of it would look better than it is (issue #17). Fine-tuning every layer costs ~3x a
forward pass per step; the top `layers` blocks cost less, since autograd stops at the first block
that learns. The file keeps only what changed, in fp16 (the backbone itself comes from its
package), so a MiniLM teacher stays a few MB; the model evaluated is the model saved.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cofc.compiler.models.batches import preprocess_all, take, to_device
from cofc.compiler.models.datasets import Split
from cofc.compiler.models.metrics import accuracy
from cofc.compiler.models.teacher import Teacher, atomic_torch_save, save_teacher
from cofc.compiler.models.torch_device import CPU, describe, placed
from cofc.errors import CofcError

HEAD_LR_FACTOR = 20.0  # the head starts from random weights: it needs a larger step than the blocks


@dataclass(frozen=True)
class FineTune:
    layers: int  # top blocks fine-tuned with the head (0: the head alone)
    epochs: int = 2
    lr: float = 5e-5  # the blocks' peak learning rate
    batch: int = 32
    seed: int = 0
    train_samples: int | None = None  # a seeded subset of the training split (None: all of it)


def trainable(teacher: Teacher, layers: int) -> dict[str, nn.Parameter]:
    """The parameters fine-tuning changes: the head, and the top `layers` blocks."""
    blocks = teacher.adapter.blocks(teacher.model)
    if not 0 <= layers <= len(blocks):
        raise CofcError(f"--layers {layers}: the teacher has {len(blocks)} blocks")
    chosen = {
        id(p)
        for module in [teacher.adapter.head(teacher.model), *blocks[len(blocks) - layers :]]
        for p in module.parameters()
    }
    return {name: p for name, p in teacher.model.named_parameters() if id(p) in chosen}


def fine_tune(
    teacher: Teacher, train: Split, config: FineTune, device: torch.device = CPU, resume: Path | None = None
) -> None:
    """Train the head and top blocks in place on cross-entropy with the split's labels, on
    `device`. Dropout stays off (the model stays in eval mode), so a run is a function of its seed
    and data. With `resume`, the state after each epoch is kept in that file, and a run killed
    mid-way continues from its last epoch."""
    torch.manual_seed(config.seed)
    model = teacher.model.eval()
    learn = trainable(teacher, config.layers)
    chosen = {id(p) for p in learn.values()}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    train = train.take(config.train_samples, seed=config.seed)
    inputs = preprocess_all(teacher, train.inputs)
    labels = torch.from_numpy(train.labels)
    steps_per_epoch = math.ceil(len(train) / config.batch)
    with placed(device, model):
        opt, sched = _optimizer(teacher, learn, config, config.epochs * steps_per_epoch)
        start = _resume(resume, config, learn, opt, sched, device) if resume is not None and resume.exists() else 0
        for epoch in range(start, config.epochs):
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
            bar = tqdm(range(steps_per_epoch), desc=f"fine-tuning, epoch {epoch + 1}/{config.epochs}")
            for step in bar:
                idx = order[step * config.batch : (step + 1) * config.batch]
                loss = F.cross_entropy(teacher.logits(to_device(take(inputs, idx), device)), labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if resume is not None:
                atomic_torch_save(
                    resume,
                    {
                        "config": asdict(config),
                        "epoch": epoch + 1,
                        "opt": opt.state_dict(),
                        "sched": sched.state_dict(),
                        "weights": {n: p.data for n, p in learn.items()},
                    },
                )
    for p in model.parameters():
        p.requires_grad_(False)


def _optimizer(
    teacher: Teacher, learn: dict[str, nn.Parameter], config: FineTune, total: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW, the new head at HEAD_LR_FACTOR times the blocks' rate; linear warm-up over the
    first 10% of the steps, then linear decay to zero."""
    head = {id(p) for p in teacher.adapter.head(teacher.model).parameters()}
    groups = [
        {"params": [p for p in learn.values() if id(p) not in head], "lr": config.lr},
        {"params": [p for p in learn.values() if id(p) in head], "lr": config.lr * HEAD_LR_FACTOR},
    ]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.01)
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup + 1)))
    )
    return opt, sched


def _resume(
    path: Path,
    config: FineTune,
    learn: dict[str, nn.Parameter],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> int:
    """Load a killed run's last epoch into the model and optimiser; the epochs it finished."""
    state = torch.load(path, map_location=device, weights_only=True)
    if state["config"] != asdict(config):
        raise CofcError(f"{path} holds a run with other settings ({state['config']}); delete it to start over")
    for name, p in learn.items():
        p.data.copy_(state["weights"][name])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    print(f"resuming after epoch {state['epoch']} from {path}")
    return state["epoch"]


def changed_weights(teacher: Teacher, layers: int) -> dict[str, torch.Tensor]:
    """What fine-tuning changed, in fp16; the model is rounded the same way, so that what is
    evaluated afterwards is exactly what the file rebuilds."""
    state = {}
    for name, p in trainable(teacher, layers).items():
        p.data.copy_(p.data.half().float())
        state[name] = p.data.half().clone()
    return state


def make_teacher(
    teacher: Teacher, train: Split, test: Split, config: FineTune, out: Path, command: str, device: torch.device = CPU
) -> dict[str, Any]:
    """Fine-tune and measure on the test split on `device`, and write the teacher file with its
    provenance."""
    start = time.time()
    resume = Path(f"{out}.resume")
    fine_tune(teacher, train, config, device, resume)
    record = dict(teacher.record)
    record["state_dict"] = changed_weights(teacher, config.layers)
    record["fine_tune"] = asdict(config)
    record["test_accuracy"] = accuracy(teacher, test, batch=64, device=device, desc="test accuracy")
    record["command"] = command
    record["torch_device"] = describe(device)
    record["train_seconds"] = round(time.time() - start, 1)
    save_teacher(out, record)
    resume.unlink(missing_ok=True)
    return record
