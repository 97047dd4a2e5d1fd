"""The build report: OUT/report.json (for tools) and OUT/report.md (for people), with plots.

Accuracies are fractions in [0, 1]. `fused.accuracy` is measured on the shipped bundles through
ONNX Runtime; the torch numbers it must agree with are kept beside it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from cofc.compiler.planning.objective import DeviceModel, latency
from cofc.compiler.plan import Plan
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, flops
from cofc.runtime._files import atomic_write, atomic_write_json


def _latency_plot(path: Path, names: list[str], t1: Sequence[float], t2: Sequence[float], t3: float,
                  teacher_ms: Sequence[float]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(names))
    ax.bar(x, t1, label="t1 compute (sub-model)")
    ax.bar(x, t2, bottom=t1, label="t2 transfer")
    ax.scatter(x, teacher_ms, marker="_", s=600, color="black", label="teacher alone")
    ax.axhline(max(a + b for a, b in zip(t1, t2)) + t3, linestyle="--", color="gray", label="CoFormer T")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("predicted ms per request")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, plan: Plan, base: TransformerSpec, devices: Sequence[DeviceModel],
                 policy: Sequence[SubModelSpec], input_bytes: int, teacher: dict, search: dict, acc: dict, ort: dict,
                 export: list, bundles: dict) -> dict[str, Any]:
    lat = latency(policy, devices, base, input_bytes)
    teacher_ms = {d.name: d.predict_ms(base.full()) for d in devices}
    teacher_flops = flops(base.full(), base)
    report = {
        "plan": {"name": plan.name, "id": bundles["plan_id"], "file": str(plan.path)},
        "teacher": {"accuracy": teacher["result"]["accuracy"], "predicted_ms": teacher_ms,
                    "spec": teacher["result"]["spec"], "mflops": teacher_flops / 1e6},
        "fused": {"accuracy": ort["fused"], "accuracy_torch": acc["fused"], "predicted_ms": lat.total,
                  "t3_ms": lat.t3, "missing_one": dict(zip([d.name for d in devices], ort["missing"])),
                  "missing_one_without_dropout": dict(zip([d.name for d in devices], acc["missing_without_dropout"])),
                  "accuracy_without_dropout": acc["fused_without_dropout"]},
        "average": {"accuracy": acc["average"]},
        "vote": {"accuracy": acc["vote"]},
        "devices": [{"name": d.name, "central": d.central, "spec": s.to_dict(), "accuracy": a,
                     "accuracy_uncalibrated": u, "t1_ms": t1, "t2_ms": t2, "mflops": flops(s, base) / 1e6,
                     "flops_share": flops(s, base) / teacher_flops}
                    for d, s, a, u, t1, t2 in zip(devices, policy, acc["submodels"], acc["submodels_uncalibrated"],
                                                  lat.t1, lat.t2)],
        "search": {"evaluations": search["evaluations"], "best": search["best"], "objective": search["objective"],
                   "history": search["history"]},
        "export": export,
        "test_samples": ort["samples"],
    }
    atomic_write_json(out / "report.json", report)
    names = [d.name for d in devices]
    _latency_plot(out / "latency.png", names, lat.t1, lat.t2, lat.t3, [teacher_ms[n] for n in names])
    atomic_write(out / "report.md", _markdown(report).encode())
    return report


def _markdown(r: dict[str, Any]) -> str:
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    lines = [f"# cofc build report: {r['plan']['name']} [{r['plan']['id']}]", "",
             f"Teacher: {pct(r['teacher']['accuracy'])} on {r['test_samples']} test samples, "
             f"{r['teacher']['mflops']:.1f} MFLOPs per request.", "",
             "## Chosen decomposition (DeBo)", "",
             "| device | layers | width | heads | MLP | FLOPs share | t1 ms | t2 ms | alone (uncalibrated → calibrated) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in r["devices"]:
        s = d["spec"]
        lines.append(f"| {d['name']}{' (central)' if d['central'] else ''} | {s['layers']} | {s['dim']} | "
                     f"{s['heads']} | {s['mlp']} | {d['flops_share']:.0%} | {d['t1_ms']:.2f} | {d['t2_ms']:.3f} | "
                     f"{pct(d['accuracy_uncalibrated'])} → {pct(d['accuracy'])} |")
    f = r["fused"]
    lines += ["", "## Accuracy", "", "| model | accuracy |", "|---|---|",
              f"| teacher | {pct(r['teacher']['accuracy'])} |",
              f"| CoFormer fused (bundles through ONNX Runtime) | {pct(f['accuracy'])} |",
              f"| CoFormer fused (torch) | {pct(f['accuracy_torch'])} |",
              f"| average of sub-model logits | {pct(r['average']['accuracy'])} |",
              f"| majority vote | {pct(r['vote']['accuracy'])} |"]
    for name, v in f["missing_one"].items():
        lines.append(f"| fused, {name} missing (feature-dropout aggregator / without) | {pct(v)} / "
                     f"{pct(f['missing_one_without_dropout'][name])} |")
    lines += ["", "## Predicted latency", "",
              f"CoFormer end to end: {f['predicted_ms']:.2f} ms (aggregation t3 {f['t3_ms']:.4f} ms).", "",
              "| device | teacher alone, ms | speed-up |", "|---|---|---|"]
    for name, ms in r["teacher"]["predicted_ms"].items():
        lines.append(f"| {name} | {ms:.2f} | {ms / f['predicted_ms']:.2f}× |")
    best = r["search"]["best"]
    lines += ["", f"## Search ({r['search']['evaluations']} DeBo evaluations)", "",
              "Best Ψ = L_val + δ·T: " + ", ".join(f"{k} {v:.4f}" for k, v in best.items() if v is not None), "",
              "![search](search.png) ![latency](latency.png)", ""]
    return "\n".join(lines)
