"""Train the ViT example teacher from scratch (seeded, CPU or CUDA); a pretrained backbone
becomes a teacher with `cofc teacher` instead (the MiniLM examples were made that way).

  python tools/train_teacher.py vit --out examples/teachers/vit_fashion_mnist.pt

A timm ViT (patch 4, 96-d, 6 layers, 6 heads, MLP ratio 2, average pooling) trained from scratch
on Fashion-MNIST: AdamW, one-cycle LR, label smoothing, random flip and ±2 px shift. It
checkpoints every epoch to <out>.resume, so a killed run continues where it stopped.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cofc.compiler.models.adapters import get_adapter
from cofc.compiler.models.datasets import load_dataset
from cofc.compiler.models.metrics import accuracy
from cofc.compiler.models.teacher import Teacher, load_teacher, save_teacher

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530  # Fashion-MNIST train-set pixel statistics


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to ±2 pixels, per image."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(x, (2, 2, 2, 2), mode="constant", value=float(x.min()))
    dx, dy = torch.randint(0, 5, (2, n), generator=gen)
    rows = torch.arange(x.shape[-2]).view(1, -1) + dy.view(-1, 1)
    cols = torch.arange(x.shape[-1]).view(1, -1) + dx.view(-1, 1)
    batch = torch.arange(n).view(-1, 1, 1)
    return padded[:, 0][batch, rows.unsqueeze(-1), cols.unsqueeze(1)].unsqueeze(1)


def train_vit(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    data = load_dataset("fashion-mnist")
    adapter = get_adapter("vit")
    arch = dict(
        img_size=28,
        patch_size=4,
        in_chans=1,
        num_classes=len(data.classes),
        embed_dim=96,
        depth=6,
        num_heads=6,
        mlp_ratio=2.0,
        global_pool="avg",
    )
    record = {
        "family": "vit",
        "arch": arch,
        "dataset": "fashion-mnist",
        "classes": list(data.classes),
        "preprocess": {"kind": "image", "mean": [FMNIST_MEAN], "std": [FMNIST_STD]},
    }
    model = adapter.build_teacher(record).to(args.device)
    steps_per_epoch = math.ceil(len(data.train) / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    resume = Path(str(args.out) + ".resume")
    start = 0
    if resume.exists():
        state = torch.load(resume, weights_only=True)
        model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"]), sched.load_state_dict(state["sched"])
        start = state["epoch"]
        print(f"resuming from epoch {start}")
    x_all = adapter.preprocess(record, data.train.inputs)["pixel_values"]
    y_all = torch.from_numpy(data.train.labels)
    for epoch in range(start, args.epochs):
        model.train()
        gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(y_all), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        for step in bar:
            idx = order[step * args.batch : (step + 1) * args.batch]
            x = _augment(x_all[idx], gen).to(args.device)
            loss = F.cross_entropy(model(x), y_all[idx].to(args.device), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch + 1},
            resume,
        )
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
            acc = accuracy(Teacher("vit", model, record), data.test, batch=500, device=args.device)
            print(f"epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)
    record["state_dict"] = {k: v.cpu() for k, v in model.state_dict().items()}
    record["test_accuracy"] = accuracy(Teacher("vit", model, record), data.test, batch=500, device=args.device)
    resume.unlink(missing_ok=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", choices=["vit"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=45)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    t0 = time.time()
    record = train_vit(args)
    record["command"] = "python tools/train_teacher.py " + shlex.join(sys.argv[1:])
    record["train_seconds"] = round(time.time() - t0, 1)
    save_teacher(args.out, record)
    check = load_teacher(args.out)  # the saved file must rebuild the same teacher
    assert check.family == record["family"]
    print(f"{args.teacher}: test accuracy {record['test_accuracy']:.4f} in {record['train_seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
