"""Randomised scenes: one `SceneConfig` per (kind, seed), for training and held-out evaluation.

Speeds, curvatures, curve positions, braking times and strengths and lead gaps are drawn from
fixed ranges (below) with a generator seeded by (kind, seed), so a (kind, seed) pair always
gives the same drive. Training uses seeds below `HELD_OUT_SEED_START`; evaluation uses seeds
from it upward, which training never draws.
"""

from __future__ import annotations

import numpy as np

from alpamayo_core.sim.drive import SCENE_KINDS, SceneConfig

#: First seed of the held-out (evaluation) drives; training seeds are below it.
HELD_OUT_SEED_START = 1_000_000
#: Drive length (s): long enough for a stop from the fastest speed at the weakest braking.
DRIVE_SECONDS = 14.0


def random_scene(kind: str, seed: int, **overrides) -> SceneConfig:
    """The scene of `kind` for `seed`; `overrides` replace drawn or default fields
    (e.g. `width`, `height`, `cameras`, `seconds`)."""
    if kind not in SCENE_KINDS:
        raise ValueError(f"kind: must be one of {SCENE_KINDS}, got {kind!r}")
    rng = np.random.default_rng([SCENE_KINDS.index(kind), seed])
    speed = float(rng.uniform(6.0, 14.0))
    drawn = dict(
        kind=kind, seconds=DRIVE_SECONDS, speed_mps=speed, seed=seed,
        curvature_1pm=float(1.0 / rng.uniform(40.0, 100.0)),
        curve_start_m=float(rng.uniform(5.0, 50.0)),
        curve_ramp_m=float(rng.uniform(15.0, 40.0)),
        brake_at_s=float(rng.uniform(1.0, 5.0)),
        decel_mps2=float(rng.uniform(2.0, 4.0)),
        final_speed_mps=float(rng.uniform(0.0, 0.5 * speed)),
        lead_gap_m=float(rng.uniform(18.0, 35.0)),
    )
    drawn.update(overrides)
    return SceneConfig(**drawn)
