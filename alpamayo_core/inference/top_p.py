"""Top-p (nucleus) sampling that gives HF's token for the same generator, mostly without a sort.

The reference samples with `TopPLogitsWarper` (sort the vocabulary, drop the least likely tokens
whose cumulative probability is <= 1 - top_p) and `torch.multinomial(softmax(...), 1)`. For one
sample, `torch.multinomial` draws q ~ Exp(1) per vocabulary entry from the generator and returns
argmax(p / q) (the exponential race; ATen's `multinomial` fast path for one sample).

`sample_top_p` draws the same q and runs the race over the whole vocabulary first. Renormalising
the kept probabilities does not change which kept token wins, so when the winner is surely kept
(the probability mass strictly below it plus its own exceeds 1 - top_p by a margin larger than
float rounding of HF's cumulative sum) it is HF's token; otherwise (rare: the winner sits in the
discarded tail) HF's filter runs and the race is rerun on the same q, exactly as multinomial does.

Equal to HF's choice except when the two best ratios p/q of a row tie within float rounding
(renormalising can then flip the order; probability of order 1e-7 per token). Host reads: one
per token to choose the path, so CUDA devices use the sorted path (`sample_top_p_sorted`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import TopPLogitsWarper

#: Slack on the kept/dropped decision for float rounding of HF's cumulative sum.
_MARGIN = 1e-4


def sample_top_p_sorted(scores: Tensor, top_p: float, generator: torch.Generator | None) -> Tensor:
    """HF's way: (B, V) temperature-scaled scores -> (B,) ids (sort, filter, multinomial)."""
    filtered = TopPLogitsWarper(top_p)(None, scores)
    return torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)


def sample_top_p(scores: Tensor, top_p: float, generator: torch.Generator | None) -> Tensor:
    """(B, V) temperature-scaled scores -> (B,) ids, as `sample_top_p_sorted` picks them."""
    if scores.device.type != "cpu":
        return sample_top_p_sorted(scores, top_p, generator)
    probs = scores.softmax(-1)  # (B, V)
    race = torch.empty_like(probs).exponential_(1, generator=generator)  # multinomial's q
    winner = (probs / race).argmax(-1, keepdim=True)  # (B, 1)
    if top_p >= 1.0:
        return winner.squeeze(1)
    p_win = probs.gather(1, winner)  # (B, 1)
    below = probs.masked_fill(probs >= p_win, 0.0).sum(-1, keepdim=True)
    if bool((below + p_win > 1.0 - top_p + _MARGIN).all()):
        return winner.squeeze(1)
    kept = TopPLogitsWarper(top_p)(None, scores).softmax(-1)
    return (kept / race).argmax(-1)
