"""Estimated latency for boards nobody here can measure (Jetson Nano, TX2, Orin Nano).

    t(C) = max(ω(C) / (η·P), bytes(C) / (η·B)) + l·τ_layer + τ_fixed

P is the board's published peak compute (the paper's Table VII), B its published memory
bandwidth, bytes(C) the weights read once per request plus activations written and read, τ the
per-layer kernel-launch and per-request overheads of a small TensorRT engine. η, one efficiency for
all boards, is solved so that DeiT-B on the TX2 takes the paper's measured 127 ms (Table IV).
Every row built from this says `"estimated": true`; replace it with a measured table
(`cofc profile` on the board) before trusting a plan's latencies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, activation_bytes, flops, parameters

FORMULA = "roofline: max(ω/(η·P), bytes/(η·B)) + l·τ_layer + τ_fixed, η from DeiT-B on TX2 = 127 ms"
TAU_LAYER_MS = 0.08  # ~10 kernels per transformer layer at ~8 µs launch each
TAU_FIXED_MS = 0.30  # enqueue, input and output copies of one request


@dataclass(frozen=True)
class Board:
    name: str
    peak_gflops: float  # paper Table VII
    bandwidth_gbs: float  # published LPDDR bandwidth
    memory_mb: int


BOARDS = {
    "jetson-nano": Board("jetson-nano", 235.8, 25.6, 4096),
    "jetson-tx2": Board("jetson-tx2", 665.6, 59.7, 8192),
    "orin-nano": Board("orin-nano", 640.0, 34.0, 4096),
}

# The anchor: DeiT-B (ImageNet, 224 px, patch 16) measured at about 127 ms on the TX2 (Table IV).
DEIT_B = TransformerSpec(
    layers=12,
    dim=768,
    heads=12,
    mlp=3072,
    head_dim=64,
    tokens=197,
    classes=1000,
    embed_in=3 * 16 * 16,
    embed_params_per_dim=3 * 16 * 16 + 1 + 197 + 1,
)
ANCHOR_MS = 127.0


def request_bytes(spec: SubModelSpec, base: TransformerSpec, bytes_per_value: int = 2) -> float:
    """Weights read once plus every layer's activations written and read (FP16 on the board)."""
    per_layer = activation_bytes(spec, base, bytes_per_value)
    return parameters(spec, base) * bytes_per_value + 2 * spec.layers * per_layer


def _raw_ms(spec: SubModelSpec, base: TransformerSpec, board: Board, efficiency: float) -> float:
    compute = flops(spec, base) / (efficiency * board.peak_gflops * 1e6)
    memory = request_bytes(spec, base) / (efficiency * board.bandwidth_gbs * 1e6)
    return max(compute, memory) + spec.layers * TAU_LAYER_MS + TAU_FIXED_MS


def anchored_efficiency() -> float:
    """η such that the model gives DeiT-B on the TX2 exactly ANCHOR_MS (the max() is compute-bound
    there, so η has a closed form; checked below)."""
    full, tx2 = DEIT_B.full(), BOARDS["jetson-tx2"]
    overhead = full.layers * TAU_LAYER_MS + TAU_FIXED_MS
    eta = flops(full, DEIT_B) / ((ANCHOR_MS - overhead) * tx2.peak_gflops * 1e6)
    assert abs(_raw_ms(full, DEIT_B, tx2, eta) - ANCHOR_MS) < 1e-6, "anchor is not compute-bound"
    return eta


def estimate_ms(spec: SubModelSpec, base: TransformerSpec, board: Board) -> float:
    return _raw_ms(spec, base, board, anchored_efficiency())


def estimated_table(family: str, base: TransformerSpec, board: Board, pool: list[SubModelSpec]) -> dict:
    """A latency table in `cofc profile`'s format whose every row is estimated, and says so."""
    from cofc.compiler.latency.profile import FORMAT

    rows = [
        {
            "spec": s.to_dict(),
            "ms": estimate_ms(s, base, board),
            "p10": None,
            "p90": None,
            "flops": flops(s, base),
            "estimated": True,
        }
        for s in pool
    ]
    return {
        "format": FORMAT,
        "rows": rows,
        "provenance": {
            "device": board.name,
            "gpu": board.name,
            "backend": "tensorrt",
            "backend_version": None,
            "precision": "fp16",
            "threads": None,
            "batch": 1,
            "family": family,
            "teacher": base.to_dict(),
            "date": dt.date.today().isoformat(),
            "estimated": True,
            "method": FORMULA,
            "board": {
                "peak_gflops": board.peak_gflops,
                "bandwidth_gbs": board.bandwidth_gbs,
                "efficiency": anchored_efficiency(),
            },
        },
    }
