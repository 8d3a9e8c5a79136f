"""Backend self-check and selection: a backend is used only after it proved itself here.

Dimension glossary: B = trajectory rows, T = action tokens, P = cached prefix length.

`parity_check` runs a candidate backend and the eager torch step (the reference every backend
is tested against) on the same synthetic inputs: a random prefix of the model's K/V shapes,
random x and t. It reports the max abs error and the cosine similarity of the two velocities.
`select_backend` tries candidates in order and keeps the first that builds and passes; every
candidate tried leaves a `BackendTrial` (built backend or error, parity figures), so callers log
and publish why a faster backend was skipped. `select_fastest` (what "auto" uses) builds and
checks every candidate, then times the passing ones on a synthetic prefix of a real prompt's
length (interleaved repetitions, minimum per candidate) and keeps the fastest; the timings are
part of each trial's summary.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from alpamayo_core.backends.base import BackendUnavailable, ExpertBackend
from alpamayo_core.backends.torch_eager import TorchEagerBackend
from alpamayo_core.model.denoise_step import DenoiseStep
from alpamayo_core.model.expert import ExpertPrefix, prefix_bias

logger = logging.getLogger(__name__)

#: Synthetic check inputs: one row, a short prefix (the check must cost well under a second).
CHECK_BATCH, CHECK_PREFIX_LEN, CHECK_SEED = 1, 48, 0
#: Timed trial: prefix tokens (a real 16-image prompt is ~3k) and interleaved repetitions.
TRIAL_PREFIX_LEN, TRIAL_REPEATS = 3072, 5


class NoBackendPassed(BackendUnavailable):
    """Every candidate failed to build or its parity check; `trials` says how."""

    def __init__(self, trials: tuple[BackendTrial, ...]):
        super().__init__("no expert backend passed its self-check: "
                         + "; ".join(t.summary() for t in trials))
        self.trials = trials


@dataclass(frozen=True)
class ParityTolerance:
    """Pass rule: cosine >= `min_cosine` and max |v - v_ref| <= `max_rel_err` * max |v_ref|."""

    min_cosine: float
    max_rel_err: float

    def __post_init__(self) -> None:
        if not 0.0 < self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be in (0, 1], got {self.min_cosine}")
        if self.max_rel_err <= 0.0:
            raise ValueError(f"max_rel_err must be positive, got {self.max_rel_err}")

    @classmethod
    def for_dtype(cls, dtype: torch.dtype) -> ParityTolerance:
        """fp32 steps agree to ~1e-6 relative; bf16/fp16 kernels differ in rounding order."""
        if dtype == torch.float32:
            return cls(min_cosine=0.99999, max_rel_err=1e-3)
        return cls(min_cosine=0.999, max_rel_err=5e-2)


@dataclass(frozen=True)
class ParityResult:
    """Velocity of a backend vs the eager torch step on the same inputs."""

    max_abs_err: float
    cosine: float
    ref_max_abs: float  # max |v_ref|, the scale of the relative error

    def passes(self, tol: ParityTolerance) -> bool:
        finite = math.isfinite(self.max_abs_err) and math.isfinite(self.cosine)
        return finite and self.cosine >= tol.min_cosine and \
            self.max_abs_err <= tol.max_rel_err * max(self.ref_max_abs, 1e-6)


@dataclass
class BackendTrial:
    """One candidate: the built backend (None when it could not be built), its parity, and why
    it was rejected (`error`), if it was."""

    name: str
    backend: ExpertBackend | None = None
    parity: ParityResult | None = None
    error: str | None = None
    trial_ms: float | None = None  # min ms per velocity call in the timed trial

    @property
    def timing(self) -> str:
        return "" if self.trial_ms is None else f", {self.trial_ms:.2f} ms/step in the trial"

    @property
    def passed(self) -> bool:
        return self.backend is not None and self.error is None

    def summary(self) -> str:
        figures = "" if self.parity is None else (
            f"max_abs_err {self.parity.max_abs_err:.3g}, cosine {self.parity.cosine:.6f}")
        if self.passed:
            return (f"{self.name}: passed"
                    + (f" ({figures}{self.timing})" if figures else f" (reference{self.timing})"))
        return f"{self.name}: rejected: {self.error}" + (f" ({figures})" if figures else "")


@dataclass(frozen=True)
class BackendSelection:
    """The chosen backend and every trial that led to it (failed ones first)."""

    backend: ExpertBackend
    trials: tuple[BackendTrial, ...]

    @property
    def chosen(self) -> BackendTrial:
        return self.trials[-1]

    @property
    def fell_back(self) -> bool:
        """True when a candidate preferred over the chosen one was rejected (a slower one that
        passed is not a fallback)."""
        return any(not trial.passed for trial in self.trials[:-1])

    def diagnostic_values(self) -> dict[str, object]:
        """Key/values for /diagnostics and logs."""
        parity = self.chosen.parity
        values: dict[str, object] = {"backend": self.backend.name,
                                     "trials": "; ".join(t.summary() for t in self.trials)}
        if parity is not None:
            values.update(parity_max_abs_err=parity.max_abs_err, parity_cosine=parity.cosine)
        return values


def synthetic_prefix(step: DenoiseStep, device: torch.device, batch: int = CHECK_BATCH,
                     prefix_len: int = CHECK_PREFIX_LEN, n_action: int = 64,
                     seed: int = CHECK_SEED) -> ExpertPrefix:
    """A random prefix of the step's K/V shapes in its dtype on `device` (deterministic)."""
    cfg = step.expert.config
    dtype = next(step.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, cfg.num_key_value_heads, prefix_len, cfg.head_dim)

    def kv() -> tuple[torch.Tensor, ...]:
        return tuple(torch.randn(shape, generator=gen).to(device, dtype)
                     for _ in step.expert.layers)

    positions = (torch.arange(n_action) + prefix_len).expand(batch, -1).to(device)
    valid_len = torch.full((batch,), prefix_len - 4)  # a few masked slots, as in a real plan
    bias = prefix_bias(prefix_len, n_action, valid_len=valid_len).to(device)
    return ExpertPrefix(keys=kv(), values=kv(), positions=positions.contiguous(),
                        attn_bias=bias.contiguous())


def parity_check(backend: ExpertBackend, step: DenoiseStep, n_action: int = 64,
                 seed: int = CHECK_SEED) -> ParityResult:
    """`backend` vs the eager torch step on one synthetic prefix and (x, t)."""
    prefix = synthetic_prefix(step, backend.device, n_action=n_action, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(CHECK_BATCH, n_action, 2, generator=gen).to(backend.device)
    t = torch.full((CHECK_BATCH,), 0.5, device=backend.device)
    with torch.inference_mode():
        reference = TorchEagerBackend(step, backend.device)
        reference.bind(prefix)
        expected = reference.velocity(x, t).double().flatten()
        backend.bind(prefix)
        got = backend.velocity(x, t).double().flatten()
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=0)
    return ParityResult(max_abs_err=float((got - expected).abs().max()), cosine=float(cosine),
                        ref_max_abs=float(expected.abs().max()))


def try_backend(name: str, build: Callable[[str], ExpertBackend], step: DenoiseStep,
                tolerance: ParityTolerance, n_action: int = 64) -> BackendTrial:
    """Build backend `name` and check it; a failure of either is recorded, never raised."""
    try:
        backend = build(name)
    except Exception as err:  # any build failure disqualifies the candidate
        return BackendTrial(name, error=f"{type(err).__name__}: {err}")
    if isinstance(backend, TorchEagerBackend):
        return BackendTrial(name, backend=backend)  # it is the reference
    trial = BackendTrial(name, backend=backend)
    try:
        trial.parity = parity_check(backend, step, n_action)
        if not trial.parity.passes(tolerance):
            trial.error = (f"parity check failed (needs cosine >= {tolerance.min_cosine}, "
                           f"max_abs_err <= {tolerance.max_rel_err:g} x max|v_ref| = "
                           f"{tolerance.max_rel_err * trial.parity.ref_max_abs:.3g})")
    except Exception as err:  # a backend raising on first use is rejected
        trial.error = f"self-check raised {type(err).__name__}: {err}"
    if trial.error is not None:
        backend.close()
        trial.backend = None
    return trial


def select_backend(candidates: Sequence[str], build: Callable[[str], ExpertBackend],
                   step: DenoiseStep, tolerance: ParityTolerance | None = None,
                   n_action: int = 64) -> BackendSelection:
    """The first of `candidates` that builds and passes its parity check.

    Raises NoBackendPassed (a BackendUnavailable) listing every rejection when none passes.
    """
    if not candidates:
        raise ValueError("select_backend needs at least one candidate backend")
    tolerance = tolerance or ParityTolerance.for_dtype(next(step.parameters()).dtype)
    trials: list[BackendTrial] = []
    for name in candidates:
        trial = try_backend(name, build, step, tolerance, n_action)
        trials.append(trial)
        log = logger.info if trial.passed else logger.warning
        log("expert backend %s", trial.summary())
        if trial.passed:
            return BackendSelection(trial.backend, tuple(trials))
    raise NoBackendPassed(tuple(trials))


def _time_velocity(backend: ExpertBackend, x: torch.Tensor, t: torch.Tensor) -> float:
    """Seconds of one velocity call, device work included."""
    sync = torch.cuda.synchronize if backend.device.type == "cuda" else (lambda *_: None)
    sync(backend.device)
    start = time.perf_counter()
    backend.velocity(x, t)
    sync(backend.device)
    return time.perf_counter() - start


def _reject(trial: BackendTrial, err: Exception) -> None:
    """Record that `trial` raised in the timed trial, and release its backend."""
    trial.error = f"timed trial raised {type(err).__name__}: {err}"
    trial.backend.close()
    trial.backend = None


def timed_trial(trials: Sequence[BackendTrial], step: DenoiseStep, batch: int,
                prefix_len: int = TRIAL_PREFIX_LEN, repeats: int = TRIAL_REPEATS,
                n_action: int = 64) -> None:
    """Set `trial_ms` of each trial: min over `repeats` interleaved velocity calls on one
    synthetic prefix of `prefix_len` tokens and `batch` rows, bound once per backend (as in a
    plan: one bind, then the flow steps), after two warm-up calls each.

    The trial runs at the plan's shape, which the parity check (one row, a short prefix) does
    not: a backend that raises here (an engine profile limit, a failed graph capture) is
    rejected with the error, as in the self-check, and the others go on.
    """
    device = trials[0].backend.device
    prefix = synthetic_prefix(step, device, batch=batch, prefix_len=prefix_len,
                              n_action=n_action, seed=CHECK_SEED + 2)
    x = torch.randn(batch, n_action, 2, generator=torch.Generator().manual_seed(3)).to(device)
    t = torch.full((batch,), 0.5, device=device)
    best = {trial.name: math.inf for trial in trials}
    with torch.inference_mode():
        for trial in trials:
            try:
                trial.backend.bind(prefix)
                for _ in range(2):  # warm-up: first-call allocations, lazy builds
                    trial.backend.velocity(x, t)
            except Exception as err:  # any failure at the plan's shape disqualifies it
                _reject(trial, err)
        for _ in range(repeats):
            for trial in (trial for trial in trials if trial.passed):
                try:
                    best[trial.name] = min(best[trial.name],
                                           _time_velocity(trial.backend, x, t))
                except Exception as err:  # as above
                    _reject(trial, err)
    for trial in trials:
        if trial.passed:
            trial.trial_ms = best[trial.name] * 1e3


def select_fastest(candidates: Sequence[str], build: Callable[[str], ExpertBackend],
                   step: DenoiseStep, batch: int = 1, prefix_len: int = TRIAL_PREFIX_LEN,
                   tolerance: ParityTolerance | None = None,
                   n_action: int = 64) -> BackendSelection:
    """Every candidate built and parity-checked, the passing ones timed (`timed_trial` at
    `batch` rows and `prefix_len` tokens); the fastest is chosen and the others are closed.

    The selection's trials end with the chosen one. Raises NoBackendPassed when none passes.
    """
    if not candidates:
        raise ValueError("select_fastest needs at least one candidate backend")
    tolerance = tolerance or ParityTolerance.for_dtype(next(step.parameters()).dtype)
    trials = [try_backend(name, build, step, tolerance, n_action) for name in candidates]
    passing = [trial for trial in trials if trial.passed]
    if not passing:
        raise NoBackendPassed(tuple(trials))
    if len(passing) > 1:
        timed_trial(passing, step, batch, prefix_len, n_action=n_action)
        passing = [trial for trial in passing if trial.passed]
        if not passing:
            raise NoBackendPassed(tuple(trials))
    chosen = min(passing, key=lambda trial: trial.trial_ms or 0.0)
    for trial in passing:
        if trial is not chosen:
            trial.backend.close()
    ordered = (*(trial for trial in trials if trial is not chosen), chosen)
    for trial in ordered:
        (logger.info if trial.passed else logger.warning)("expert backend %s", trial.summary())
    logger.info("expert backend chosen by timed trial: %s", chosen.name)
    return BackendSelection(chosen.backend, ordered)
