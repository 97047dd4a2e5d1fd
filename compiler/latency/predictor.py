"""Latency predictor f(l, d, h̄, D̄) -> ms, fitted on one latency table (paper appendix A).

Three candidates are fitted on the same 80% of the rows and scored on the other 20%:
  mlp           the paper's: three layers (two hidden of 600 units and the output), ReLU, on
                standardised (l, d, h̄, D̄), predicting log(ms) so that errors are relative;
  linear        ms = a·ω(C) + b·params(C) + c·l + e with non-negative coefficients (compute,
                weight traffic, per-layer launch overhead): few parameters, hard to overfit;
  linear+heads  the same + g·Σh: attention's work per head that ω(C) does not count (scaling,
                masking and softmax over T² scores, a kernel each), which makes narrow members
                with many heads slow (docs/experiments/levers.md, section 9).
The best on held-out rows (share within ±10%, then RMSE) is refitted on all rows and kept.
A fitted predictor is plain numbers (JSON and a .npz), never a pickle.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec, flops, parameters
from cofc.runtime._files import atomic_write, atomic_write_json

HIDDEN = (600, 600)

_FEATURES: dict[str, Callable[[SubModelSpec, TransformerSpec], float]] = {
    "mflops": lambda s, base: flops(s, base) / 1e6,
    "mparams": lambda s, base: parameters(s, base) / 1e6,
    "layers": lambda s, base: s.layers,
    "heads": lambda s, base: sum(s.heads),
    "fixed": lambda s, base: 1.0,
}
LINEAR = {  # kind -> its features, in the order of its coefficients
    "linear": ("mflops", "mparams", "layers", "fixed"),
    "linear+heads": ("mflops", "mparams", "layers", "heads", "fixed"),
}


def predictor_path(table: Path) -> Path:
    """Where a table's fitted predictor lives: beside it, `<table>.predictor.json` and `.npz`."""
    return table.with_name(table.stem + ".predictor.json")


def features(spec: SubModelSpec) -> list[float]:
    """The predictor's inputs (appendix A): l, d, h̄, D̄."""
    return [spec.layers, spec.dim, spec.mean_heads, spec.mean_mlp]


def _linear_features(specs: Sequence[SubModelSpec], base: TransformerSpec, kind: str) -> np.ndarray:
    return np.array([[_FEATURES[n](s, base) for n in LINEAR[kind]] for s in specs], dtype=float)


@dataclass
class Predictor:
    kind: str  # "mlp" or one of LINEAR
    base: TransformerSpec
    arrays: dict[str, np.ndarray] = field(repr=False)
    scores: dict[str, Any] = field(default_factory=dict)

    def predict(self, specs: Sequence[SubModelSpec]) -> np.ndarray:
        """Predicted latency in ms of each spec."""
        if self.kind in LINEAR:
            return _linear_features(specs, self.base, self.kind) @ self.arrays["coef"]
        h = (np.array([features(s) for s in specs]) - self.arrays["mean"]) / self.arrays["scale"]
        layers = sorted(k for k in self.arrays if k.startswith("w"))
        for i, name in enumerate(layers):
            h = h @ self.arrays[name] + self.arrays["b" + name[1:]]
            if i < len(layers) - 1:
                h = np.maximum(h, 0.0)
        return np.exp(h[:, 0])

    def __call__(self, spec: SubModelSpec) -> float:
        return float(self.predict([spec])[0])

    def save(self, path: Path) -> None:
        """`path`.json holds kind, scores and the linear coefficients; `path`.npz the MLP weights."""
        meta = {
            "kind": self.kind,
            "scores": self.scores,
            "base": {k: getattr(self.base, k) for k in self.base.__dataclass_fields__},
        }
        arrays = io.BytesIO()
        np.savez(arrays, **self.arrays)  # type: ignore[arg-type]  # stub: **kwds may be allow_pickle
        atomic_write(path.with_suffix(".npz"), arrays.getvalue())
        atomic_write_json(path.with_suffix(".json"), meta)

    @classmethod
    def load(cls, path: Path) -> Predictor:
        meta = json.loads(path.with_suffix(".json").read_text())
        with np.load(path.with_suffix(".npz")) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(meta["kind"], TransformerSpec(**meta["base"]), arrays, meta["scores"])


def fit_and_store(table_path: Path, table: dict[str, Any], seed: int = 0) -> Predictor:
    """Fit the table's predictor, store it beside the table, and rewrite the table with its
    held-out scores in the `predictor` entry (`cofc profile`, tools/refit_predictors.py)."""
    predictor = fit_predictor(table, seed=seed)
    predictor.save(predictor_path(table_path))
    table["predictor"] = predictor.scores
    atomic_write_json(table_path, table)
    return predictor


def _fit_linear(
    specs: Sequence[SubModelSpec], ms: np.ndarray, base: TransformerSpec, kind: str
) -> dict[str, np.ndarray]:
    coef, _ = nnls(_linear_features(specs, base, kind), ms)
    return {"coef": coef}


def _fit_mlp(specs: Sequence[SubModelSpec], ms: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    x = np.array([features(s) for s in specs])
    mean, scale = x.mean(0), x.std(0) + 1e-9
    mlp = MLPRegressor(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        alpha=1e-4,
        learning_rate_init=1e-3,
        max_iter=3000,
        tol=1e-7,
        n_iter_no_change=100,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the iteration cap is the budget
        mlp.fit((x - mean) / scale, np.log(ms))
    arrays = {"mean": mean, "scale": scale}
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        arrays[f"w{i}"], arrays[f"b{i}"] = w, b
    return arrays


def score(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    rel = np.abs(predicted - measured) / measured
    return {
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "within_10pct": float(np.mean(rel <= 0.10)),
        "rows": int(len(measured)),
    }


def fit_predictor(table: dict[str, Any], seed: int = 0, holdout: float = 0.2) -> Predictor:
    """Fit every candidate on a seeded split of the table's rows; keep and refit the best."""
    base = TransformerSpec(**table["provenance"]["teacher"])
    specs = [SubModelSpec.from_dict(r["spec"]) for r in table["rows"]]
    ms = np.array([r["ms"] for r in table["rows"]], dtype=float)
    if len(specs) < 10:
        raise ValueError(f"a latency table needs at least 10 rows to fit a predictor, it has {len(specs)}")
    order = np.random.default_rng(seed).permutation(len(specs))
    cut = int(round(len(specs) * (1 - holdout)))
    train, test = order[:cut], order[cut:]

    def fit(kind: str, idx: np.ndarray) -> Predictor:
        rows = [specs[i] for i in idx]
        arrays = _fit_mlp(rows, ms[idx], seed) if kind == "mlp" else _fit_linear(rows, ms[idx], base, kind)
        return Predictor(kind, base, arrays)

    scores = {kind: score(fit(kind, train).predict([specs[i] for i in test]), ms[test]) for kind in ("mlp", *LINEAR)}
    best = max(scores, key=lambda k: (scores[k]["within_10pct"], -scores[k]["rmse_ms"]))
    kept = fit(best, order)
    kept.scores = {"held_out": scores, "chosen": best}
    return kept
