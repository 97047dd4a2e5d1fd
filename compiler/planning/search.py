"""DeBo (paper §III-C1, Algorithm 1 lines 1–11) and its baselines, random and uniform search.

Encoding. Each device's sub-model is four integers (l_n, d_n/head_dim, h̄_n, D̄_n/unit), with
the same head count and MLP width in every one of its layers: 4·N dimensions (12 for three
devices). Per-layer vectors would give 2·Σl_n + 2N (up to 48 for three 6-layer sub-models),
where a GP with EI over a few dozen evaluations learns little; and with uniform layers, C3 and C4
reduce to Σ h̄_n ≤ h and Σ D̄_n ≤ D. Ragged per-layer shapes stay expressible everywhere else
(specs, adapters, predictor, profiles).

Feasibility. Infeasible policies never cost an evaluation: the acquisition is maximised over
candidates drawn from the feasible set only (random feasible policies plus one-step
neighbours of the best so far), scored by scikit-optimize's GP (Matérn ν = 1.5, as eq. 9) and
expected improvement (eq. 12). Each step screens its thousand random candidates against C1–C6
in one array pass (`objective.feasible_uniform`), not one spec at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np

from cofc.compiler.planning.objective import Evaluation, Evaluator, Policy
from cofc.compiler.planning.spec import SubModelSpec, TransformerSpec

MLP_STEPS = 16  # D̄ moves in D/16 steps


@dataclass(frozen=True)
class SearchSpace:
    base: TransformerSpec
    devices: int
    min_layers: int = 1  # l_n ≥ this for every sub-model (the plan's objective.min_layers)

    @property
    def mlp_unit(self) -> int:
        return max(1, self.base.mlp // MLP_STEPS)

    @property
    def upper(self) -> np.ndarray:
        """Inclusive upper bound of each coordinate."""
        b = self.base
        return np.array([b.layers, b.dim // b.head_dim, b.heads, b.mlp // self.mlp_unit] * self.devices)

    @property
    def lower(self) -> np.ndarray:
        """Inclusive lower bound of each coordinate: `min_layers` layers, one unit of the rest."""
        return np.array([self.min_layers, 1, 1, 1] * self.devices)

    def columns(self, xs: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Encoded policies (n, 4N) as four (n, N) arrays in the spec's units: l_n, d_n, h_n, D_n."""
        c = np.asarray(xs, dtype=np.int64).reshape(-1, self.devices, 4)
        return c[..., 0], c[..., 1] * self.base.head_dim, c[..., 2], c[..., 3] * self.mlp_unit

    def decode(self, x: np.ndarray | Sequence[int]) -> Policy:
        layers, dims, heads, mlp = (c[0] for c in self.columns(x))
        return tuple(SubModelSpec.uniform(*c) for c in zip(layers, dims, heads, mlp, strict=True))

    def encode(self, policy: Policy) -> np.ndarray:
        return np.array(
            [[s.layers, s.dim // self.base.head_dim, s.heads[0], s.mlp[0] // self.mlp_unit] for s in policy]
        ).ravel()

    def unit_cube(self, xs: np.ndarray) -> np.ndarray:
        """Coordinates scaled to [0, 1], where the GP's length scale means the same in every one."""
        scaled: np.ndarray = (np.atleast_2d(xs) - self.lower) / np.maximum(self.upper - self.lower, 1)
        return scaled

    def propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` random policies (count, 4N) that satisfy C1–C4 by construction: each shared
        resource (width, heads, MLP width) is split at random among the devices, then each share
        shrunk at random. The generator is called policy by policy, so a batch of k draws what k
        batches of one would; only the arithmetic runs over the batch."""
        n, totals = self.devices, self.upper[1:4]
        layers = np.empty((count, n), dtype=np.int64)
        split, shrink = np.empty((count, 3, n)), np.empty((count, 3, n))
        for i in range(count):
            layers[i] = rng.integers(self.min_layers, self.base.layers + 1, size=n)
            for j in range(3):
                split[i, j] = rng.dirichlet(np.ones(n))
                shrink[i, j] = rng.uniform(0.3, 1.0, size=n)
        shares = np.clip(np.floor(split * totals[:, None] * shrink), 1, None).astype(np.int64)
        for i, j in zip(*np.nonzero(shares.sum(-1) > totals), strict=True):  # floor(…) ≥ 1 may overshoot tiny totals
            while shares[i, j].sum() > totals[j]:
                shares[i, j, np.argmax(shares[i, j])] -= 1
        return np.concatenate([layers[:, None], shares], axis=1).transpose(0, 2, 1).reshape(count, 4 * n)

    def neighbours(self, x: np.ndarray) -> list[np.ndarray]:
        """Every policy one step away in one coordinate (the local part of the candidate set)."""
        out = []
        for i in range(len(x)):
            for step in (-1, 1):
                y = x.copy()
                y[i] += step
                if self.lower[i] <= y[i] <= self.upper[i]:
                    out.append(y)
        return out


@dataclass
class SearchResult:
    method: str
    history: list[Evaluation] = field(default_factory=list)

    @property
    def best(self) -> Evaluation:
        return min(self.history, key=lambda e: e.objective)

    def best_so_far(self) -> list[float]:
        return list(np.minimum.accumulate([e.objective for e in self.history]))


def feasible_mask(space: SearchSpace, evaluator: Evaluator, xs: np.ndarray) -> np.ndarray:
    """C1–C6 of every encoded policy in `xs` (n, 4N) at once: (n,) booleans."""
    return evaluator.feasible_uniform(*space.columns(xs))


def sample_feasible(
    space: SearchSpace,
    evaluator: Evaluator,
    rng: np.random.Generator,
    count: int,
    exclude: AbstractSet[bytes] = frozenset(),
    max_tries: int = 200,
) -> list[np.ndarray]:
    """Up to `count` distinct feasible policies (C1–C6), none of them in `exclude`, from at most
    `count · max_tries` proposals.

    Proposals come in rounds of as many as are still missing, each round screened at once
    (`feasible_mask`). A round of k draws finds at most k policies, so no round draws past the
    point where drawing and checking one at a time would stop: the draws, the policies kept and
    the generator's state afterwards are those of the one-at-a-time loop."""
    found: dict[bytes, np.ndarray] = {}
    tries = count * max_tries
    while len(found) < count and tries > 0:
        batch = space.propose(rng, min(count - len(found), tries))
        tries -= len(batch)
        for x, ok in zip(batch, feasible_mask(space, evaluator, batch), strict=True):
            key = x.tobytes()
            if ok and key not in found and key not in exclude:
                found[key] = x
    return list(found.values())


def random_search(
    space: SearchSpace, evaluator: Evaluator, budget: int, seed: int = 0, progress: Callable[[int], None] | None = None
) -> SearchResult:
    result = SearchResult("random")
    for x in sample_feasible(space, evaluator, np.random.default_rng(seed), budget):
        result.history.append(evaluator(space.decode(x)))
        if progress:
            progress(len(result.history))
    return result


def uniform_policy(space: SearchSpace, evaluator: Evaluator) -> Policy | None:
    """The paper's uniform decomposition: every device gets an equal share of width, heads and MLP,
    and the deepest depth that every device can afford (C5, C6)."""
    b, n = space.base, space.devices
    share = (max(1, b.dim // b.head_dim // n), max(1, b.heads // n), max(1, b.mlp // space.mlp_unit // n))
    for layers in range(b.layers, space.min_layers - 1, -1):
        policy = space.decode(np.array([layers, *share] * n))
        if evaluator.feasible(policy):
            return policy
    return None


def uniform_search(space: SearchSpace, evaluator: Evaluator) -> SearchResult:
    result = SearchResult("uniform")
    policy = uniform_policy(space, evaluator)
    if policy is not None:
        result.history.append(evaluator(policy))
    return result


def debo(
    space: SearchSpace,
    evaluator: Evaluator,
    initial: int,
    iterations: int,
    seed: int = 0,
    candidates: int = 1000,
    progress: Callable[[int], None] | None = None,
    start: Sequence[Policy] = (),
) -> SearchResult:
    """Algorithm 1, lines 1–10: r random feasible policies, then I_s GP-EI steps.

    `start` holds policies to begin from, evaluated before the random ones where feasible: under a
    deadline near the devices' floor almost no random proposal meets it (issue #32's frontier at
    8 ms on four 0.4-core boards: none in 1,200), and from the floor's policy the GP steps climb
    through its feasible neighbours instead of finding nothing."""
    from sklearn.exceptions import ConvergenceWarning
    from skopt.acquisition import gaussian_ei
    from skopt.learning import GaussianProcessRegressor
    from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    result = SearchResult("debo")
    xs: list[np.ndarray] = []

    def evaluate(x: np.ndarray) -> None:
        xs.append(x)
        result.history.append(evaluator(space.decode(x)))
        if progress:
            progress(len(result.history))

    begin = [space.encode(p) for p in start if evaluator.feasible(p)]
    for x in begin + sample_feasible(space, evaluator, rng, initial, exclude={x.tobytes() for x in begin}):
        evaluate(x)
    if not xs:
        return result  # nothing feasible was found to model; the caller says why
    for _ in range(iterations):
        y = np.array([e.objective for e in result.history])
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=1.0, length_scale_bounds=(1e-2, 1e1), nu=1.5)
        # Ψ is deterministic for a fixed validation set: a small jitter, not a fitted noise term.
        gp = GaussianProcessRegressor(
            kernel=kernel, alpha=1e-6, normalize_y=True, n_restarts_optimizer=2, random_state=int(rng.integers(2**31))
        )
        seen = {x.tobytes() for x in xs}
        best = xs[int(np.argmin(y))]
        pool = sample_feasible(space, evaluator, rng, candidates, exclude=seen)
        pool += [n for n in space.neighbours(best) if n.tobytes() not in seen and evaluator.feasible(space.decode(n))]
        if not pool:
            break  # the feasible set is exhausted
        # A GP over a few dozen points gains nothing from BLAS threads; on a busy host their
        # hand-offs made each step 3–5× slower.
        with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)  # length scales at their bounds
            gp.fit(space.unit_cube(np.array(xs)), y)
            ei = gaussian_ei(space.unit_cube(np.array(pool)), gp, y_opt=float(y.min()), xi=0.01)
        evaluate(pool[int(np.argmax(ei))])
    return result
