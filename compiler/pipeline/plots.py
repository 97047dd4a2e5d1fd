"""The build's plots: the search's convergence (search.png) and the predicted latency (latency.png);
and `cofc frontier`'s measured accuracy against latency (frontier.png)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cofc.compiler.planning.search import SearchResult

if TYPE_CHECKING:
    from cofc.compiler.cluster.frontier import Frontier


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_search(results: dict[str, SearchResult], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        if len(result.history) == 1:
            ax.axhline(result.best.objective, linestyle="--", color="gray", label=f"{name} (one policy)")
        elif result.history:
            best = result.best_so_far()
            ax.plot(range(1, len(best) + 1), best, label=name)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best Ψ = L_val + δ·T so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latency(
    path: Path, names: list[str], t1: Sequence[float], t2: Sequence[float], t3: float, teacher_ms: Sequence[float]
) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(names))
    ax.bar(x, t1, label="t1 compute (sub-model)")
    ax.bar(x, t2, bottom=t1, label="t2 transfer")
    ax.scatter(x, teacher_ms, marker="_", s=600, color="black", label="teacher alone")
    ax.axhline(max(a + b for a, b in zip(t1, t2, strict=True)) + t3, linestyle="--", color="gray", label="CoFormer T")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("predicted ms per request")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_frontier(frontier: Frontier, path: Path) -> None:
    """Accuracy against measured end-to-end median: CoFormer's curve, the single compressed
    model's, and the teacher alone on the fastest device as the reference point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    gains = [r.gain for r in frontier.rows]
    ax.plot([g.coformer_ms for g in gains], [100 * g.coformer_accuracy for g in gains], "o-", label="CoFormer")
    ax.plot(
        [g.single_ms for g in gains], [100 * g.single_accuracy for g in gains], "s--", label="single compressed model"
    )
    ax.scatter(
        [frontier.teacher_ms],
        [100 * frontier.teacher_accuracy],
        marker="*",
        s=150,
        color="black",
        label="teacher alone",
    )
    for i, r in enumerate(frontier.rows):  # above and below in turn: budgets that found one policy land close
        ax.annotate(
            f"{r.budget_ms:g} ms",
            (r.gain.coformer_ms, 100 * r.gain.coformer_accuracy),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, 4 if i % 2 == 0 else -11),
        )
    ax.set_xlabel("measured end-to-end median, ms")
    ax.set_ylabel(f"accuracy on {frontier.requests} test inputs, %")
    ax.set_title(f"{frontier.plan}: accuracy against latency", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
