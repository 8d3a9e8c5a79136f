"""History tokens and text extraction: ego history -> token ids, decoded text -> blocks.

Ids come from `model.vocabulary.TokenIds`; this module only maps values to and from them.

Glossary: B = rows, S = history poses (16), 3 = xyz axes, N = 3 * S history tokens (48).
"""

from __future__ import annotations

import torch
from torch import Tensor

from alpamayo_core.model.config import HistoryTokenizerConfig

#: Text blocks that `extract_texts` pulls out of a decoded sequence.
TEXT_KEYS: tuple[str, ...] = ("cot", "meta_action", "answer")


class HistoryDeltaTokenizer:
    """Ego-history xyz -> 3*S token ids: origin-prepended deltas, uniform per-axis bins.

    Index = round((d - min) / (max - min) * (num_bins - 1)), round half to even (torch.round),
    clamped to [0, num_bins - 1], ordered step-major (x0, y0, z0, x1, ...), offset by
    `hist_token_start`. Computed in float32 like the reference.
    """

    def __init__(self, cfg: HistoryTokenizerConfig, hist_token_start: int) -> None:
        self.cfg = cfg
        self.hist_token_start = hist_token_start
        self._min = torch.tensor(cfg.dims_min, dtype=torch.float32)  # (3,)
        self._max = torch.tensor(cfg.dims_max, dtype=torch.float32)  # (3,)

    @property
    def bin_width_m(self) -> Tensor:
        """(3,) metres per bin on each axis."""
        return (self._max - self._min) / (self.cfg.num_bins - 1)

    def encode(self, xyz_m: Tensor) -> Tensor:
        """(..., S, 3) history positions in the t0 ego frame [m] -> (..., 3*S) int64 token ids."""
        if xyz_m.shape[-2:] != (self.cfg.num_steps, 3):
            raise ValueError(f"xyz_m: expected (..., {self.cfg.num_steps}, 3), "
                             f"got {tuple(xyz_m.shape)}")
        xyz = xyz_m.to(torch.float32)
        prev = torch.cat([torch.zeros_like(xyz[..., :1, :]), xyz[..., :-1, :]], dim=-2)
        delta = xyz - prev  # (..., S, 3)
        scaled = (delta - self._min) / (self._max - self._min) * (self.cfg.num_bins - 1)
        bins = torch.round(scaled).clamp(0, self.cfg.num_bins - 1).to(torch.int64)
        return bins.flatten(-2) + self.hist_token_start  # (..., 3*S)

    def decode(self, ids: Tensor) -> Tensor:
        """(..., 3*S) token ids -> (..., S, 3) positions [m] (bin centres, summed deltas)."""
        if ids.shape[-1] != self.cfg.num_tokens:
            raise ValueError(f"ids: expected (..., {self.cfg.num_tokens}), got {tuple(ids.shape)}")
        bins = (ids - self.hist_token_start).to(torch.float32).unflatten(-1, (-1, 3))
        if bins.min() < 0 or bins.max() >= self.cfg.num_bins:
            raise ValueError("ids: not history-bin tokens (outside [hist_token_start, +num_bins))")
        delta = bins / (self.cfg.num_bins - 1) * (self._max - self._min) + self._min
        return delta.cumsum(dim=-2)


def extract_texts(decoded: str) -> dict[str, str]:
    """Pull the `cot`, `meta_action` and `answer` blocks out of one decoded sequence.

    For each key: the text before the first `<|{k}_end|>`, then what follows the last
    `<|{k}_start|>` in it, stripped; empty if either tag is missing. (The reference keeps the
    whole text before an end tag that has no start tag, which leaks the prompt into the block on
    malformed output; well-formed output extracts identically.) Decode with
    `skip_special_tokens=False`.
    """
    out = {}
    for key in TEXT_KEYS:
        end_tag, start_tag = f"<|{key}_end|>", f"<|{key}_start|>"
        before = decoded.split(end_tag, 1)[0] if end_tag in decoded else ""
        out[key] = before.rsplit(start_tag, 1)[-1].strip() if start_tag in before else ""
    return out
