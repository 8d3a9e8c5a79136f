"""Which of K sampled trajectories a consumer should follow.

The reference returns K samples and leaves the choice open. We pick the medoid: the sample whose
mean waypoint distance (xy) to all other samples is smallest, i.e. the most typical plan. It is
deterministic, needs no extra model pass, and one outlier sample cannot be selected while the
others agree. With K = 1 it is sample 0.
"""

from __future__ import annotations

import numpy as np


def select_medoid(xyz_m: np.ndarray) -> int:
    """Index of the medoid of (K, T, 3) trajectories by mean xy distance per waypoint."""
    if xyz_m.ndim != 3 or xyz_m.shape[0] == 0:
        raise ValueError(f"xyz_m: expected (K, T, 3) with K >= 1, got {xyz_m.shape}")
    xy = xyz_m[..., :2]  # (K, T, 2)
    pairwise = np.linalg.norm(xy[:, None] - xy[None], axis=-1).mean(-1)  # (K, K)
    return int(np.argmin(pairwise.sum(1)))
