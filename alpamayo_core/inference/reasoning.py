"""Phase 1: chain-of-causation reasoning with a reusable KV cache.

`generate_reasoning` samples the reasoning as the reference does (temperature, top-p, no top-k,
all `<iN>` logits masked, stop one token after `<|traj_future_start|>`, EOS `<|im_end|>`
honoured), but with its own prefill + decode loop instead of `generate`: the prompt (and its
vision tower pass) is prefilled once at batch 1 and the cache is then repeated to the B rows,
prefill and decode are timed separately, and the K/V the expert needs are returned directly.
`prefill_with_reasoning` teacher-forces a fixed reasoning for deterministic tests.

Glossary: B = rows (num_traj_sets x num_traj_samples), L0 = prompt tokens, L = sequence tokens,
P = cached tokens, V = vocabulary, KV = key/value heads, D = head dim.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import DynamicCache, LogitsProcessor

from alpamayo_core.inference.decode_step import (
    CompiledDecodeStep,
    DecodeForward,
    GraphedDecodeStep,
    StaticKV,
    TextDecodeStep,
)
from alpamayo_core.inference.frame_cache import ImageFeatures, encode_frames
from alpamayo_core.inference.prefill import prefill_into
from alpamayo_core.inference.timing import device_clock
from alpamayo_core.inference.top_p import sample_top_p
from alpamayo_core.inputs.prompt import PromptInputs
from alpamayo_core.inputs.tokens import extract_texts
from alpamayo_core.model.vocabulary import TokenIds

logger = logging.getLogger(__name__)


class PlanCancelled(RuntimeError):
    """A plan in flight was cancelled through its cancel event (shutdown, deactivate)."""


def check_cancel(cancel: threading.Event | None, where: str) -> None:
    """Raise `PlanCancelled` if `cancel` is set; `where` names the stage for the message."""
    if cancel is not None and cancel.is_set():
        raise PlanCancelled(f"plan cancelled during {where}")


@dataclass(frozen=True)
class SamplingConfig:
    """Phase-1 decoding settings (reference defaults); rows = num_traj_sets x num_traj_samples."""

    temperature: float = 0.6
    top_p: float = 0.98
    max_new_tokens: int = 256
    num_traj_samples: int = 1
    num_traj_sets: int = 1
    greedy: bool = False

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"sampling.temperature: must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p: must be in (0, 1], got {self.top_p}")
        for name in ("max_new_tokens", "num_traj_samples", "num_traj_sets"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampling.{name}: must be >= 1, got {getattr(self, name)}")

    @property
    def num_rows(self) -> int:
        return self.num_traj_sets * self.num_traj_samples


@dataclass(frozen=True)
class DecodeOptions:
    """How the reasoning decode loop runs (not what it samples).

    compile: run each token through `CompiledDecodeStep` (`torch.compile`, any device; one
        compile per (rows, cache capacity) bucket, on the bucket's first plan). Logits equal
        the eager loop's to float rounding, so a sampled token can differ only where two
        candidates tie within that rounding.
    cuda_graph: replay one CUDA graph per (rows, cache capacity) bucket (CUDA devices only;
        the same operators as eager, so the same outputs).
    stop_check_every: tokens between host reads of the on-device stop flags; 0 = 1 on CPU
        (a read costs nothing there) and 8 on CUDA (each read is a host synchronisation).
    capacity_multiple: with `compile` or `cuda_graph`, cache capacities are rounded up to a
        multiple of this, so that plans with nearby prompt lengths share a bucket.

    With `cuda_graph` the result's K/V are views of the graph's own cache: valid until the
    next plan with the same (rows, capacity) (copy them to keep them longer).
    """

    compile: bool = False
    cuda_graph: bool = False
    stop_check_every: int = 0
    capacity_multiple: int = 256

    def __post_init__(self) -> None:
        if self.stop_check_every < 0:
            raise ValueError("decode.stop_check_every: must be >= 0 (0 = automatic), got "
                             f"{self.stop_check_every}")
        if self.capacity_multiple < 1:
            raise ValueError("decode.capacity_multiple: must be >= 1, got "
                             f"{self.capacity_multiple}")
        if self.compile and self.cuda_graph:
            raise ValueError("decode: choose one of compile and cuda_graph (a CUDA graph "
                             "already removes the per-operator launches compiling fuses)")

    def check_interval(self, device: torch.device) -> int:
        if self.stop_check_every:
            return self.stop_check_every
        return 1 if device.type == "cpu" else 8

    def capacity(self, tokens: int) -> int:
        """Cache columns for `tokens` (rounded up to `capacity_multiple` into buckets)."""
        if not (self.cuda_graph or self.compile):
            return tokens
        return -(-tokens // self.capacity_multiple) * self.capacity_multiple


@dataclass(frozen=True)
class Phase1Result:
    """Reasoning sequences and the VLM cache that phase 2 attends to.

    `sequences` may be one token longer than the cache (the extra token sampled after
    `<|traj_future_start|>` is never cached); every token after a row's
    `<|traj_future_start|>` is replaced by pad. A row that never produced it has
    `future_start_index = L - 1` (and `found_future_start` False), so phase 2 sees all of it.
    """

    sequences: Tensor  # (B, L) int64
    keys: tuple[Tensor, ...]  # per VLM layer (B, KV, P, D), RoPE'd and k-normed
    values: tuple[Tensor, ...]  # per VLM layer (B, KV, P, D)
    future_start_index: Tensor  # (B,) int64 index of <|traj_future_start|> in sequences
    future_start_position: Tensor  # (B,) int64 mRoPE position of that token
    found_future_start: Tensor  # (B,) bool
    texts: tuple[dict[str, str], ...]  # per row: cot, meta_action, answer
    prompt_length: int
    num_generated: int
    prefill_s: float
    decode_s: float

    @property
    def cache_length(self) -> int:
        return self.keys[0].shape[2]


def _prompt_positions(vlm, prompt_ids: Tensor, image_grid_thw: Tensor) -> Tensor:
    """(3, 1, L) mRoPE position ids of a prompt, from the model's own `get_rope_index`."""
    positions, _ = vlm.model.get_rope_index(prompt_ids, image_grid_thw=image_grid_thw,
                                            attention_mask=torch.ones_like(prompt_ids))
    return positions


def _forward(vlm, input_ids: Tensor, positions: Tensor, cache: DynamicCache,
             prompt: PromptInputs | None = None) -> Tensor:
    """One forward that appends to `cache`; returns the last position's logits (B, V) f32."""
    vision = {}
    if prompt is not None:
        vision = dict(pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw)
    past = cache.get_seq_length()
    cache_position = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
    out = vlm(input_ids=input_ids, position_ids=positions, past_key_values=cache,
              use_cache=True, cache_position=cache_position, logits_to_keep=1, **vision)
    return out.logits[:, -1, :].to(torch.float32)


class _TokenSampler:
    """Reference next-token choice: mask `<iN>`, optional extra processor, temperature, top-p.

    Temperature divides in place as HF's `TemperatureLogitsWarper` does out of place; top-p
    picks HF's `TopPLogitsWarper` + multinomial token for the same generator (`top_p`).
    """

    def __init__(self, token_ids: TokenIds, sampling: SamplingConfig,
                 extra_processor: LogitsProcessor | None, generator: torch.Generator | None,
                 mask_traj_tokens: bool = True):
        """`mask_traj_tokens` False: no `<iN>` mask (1.5 question answering, plain generate)."""
        self.band = ((token_ids.traj_token_start, token_ids.traj_token_end) if mask_traj_tokens
                     else (0, 0))
        self.greedy = sampling.greedy
        self.extra = extra_processor
        self.temperature, self.top_p = sampling.temperature, sampling.top_p
        self.generator = generator

    def __call__(self, input_ids: Tensor, logits: Tensor) -> Tensor:
        """(B, L) sequences so far and (B, V) f32 logits -> (B,) next token ids."""
        scores = logits.clone()
        scores[:, self.band[0]:self.band[1]] = -float("inf")
        if self.extra is not None:
            scores = self.extra(input_ids, scores)
        if self.greedy:
            return scores.argmax(dim=-1)
        return sample_top_p(scores.div_(self.temperature), self.top_p, self.generator)


def _decode(pre: _Prefilled, logits: Tensor, seqs: Tensor, prompt_len: int,
            sample: _TokenSampler, token_ids: TokenIds, options: DecodeOptions,
            cancel: threading.Event | None = None,
            stop_after_future_start: bool = True) -> int:
    """Sample into `seqs[:, prompt_len:]` until every row is done; returns tokens generated.

    A row is done one token after its `<|traj_future_start|>` (unless
    `stop_after_future_start` is False: question answering) or at `<|im_end|>`; done rows get
    pad (and pad is still fed, as HF generate does). The last token is never fed to the model.
    Stop conditions stay on the device; the host reads them every `stop_check_every` tokens
    (tokens decoded past the stop are discarded: the caller keeps `n` tokens and `n - 1` cache
    columns past the prompt).
    `cancel` is checked before every token (`PlanCancelled`): the host-side event costs no
    device synchronisation.
    """
    stop_id = token_ids.traj_future_start if stop_after_future_start else -1
    rows, device = seqs.shape[0], seqs.device
    max_new = seqs.shape[1] - prompt_len
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    seen_stop = torch.zeros(rows, dtype=torch.bool, device=device)
    all_done = torch.zeros(max_new, dtype=torch.bool, device=device)  # per step
    pad = torch.full((rows,), token_ids.pad, dtype=seqs.dtype, device=device)
    rotations = pre.step.rope_table(pre.first_position, max_new)  # (N, D, D)
    columns = torch.arange(prompt_len, prompt_len + max_new, device=device)
    check_every = options.check_interval(device)
    for i in range(max_new):
        check_cancel(cancel, "reasoning decode")
        at = prompt_len + i
        nxt = torch.where(done, pad, sample(seqs[:, :at], logits))  # (B,)
        seqs[:, at] = nxt
        done |= seen_stop | (nxt == token_ids.im_end)
        seen_stop |= nxt == stop_id
        all_done[i] = done.all()
        if (i + 1) % check_every == 0 or i == max_new - 1:
            finished = all_done[:i + 1]
            if bool(finished.any()):
                return int(finished.to(torch.int8).argmax()) + 1
        if i == max_new - 1:
            break
        logits = pre.forward(nxt, rotations[i], columns[i:i + 1], at + 1)
    return max_new


def _locate_future_start(seqs: Tensor, prompt_len: int, stop_id: int, pad_id: int):
    """First `<|traj_future_start|>` per row after the prompt; pads everything after it."""
    hits = seqs[:, prompt_len:] == stop_id  # (B, L - L0)
    found = hits.any(dim=1)
    index = torch.where(found, hits.int().argmax(dim=1) + prompt_len,
                        torch.full_like(found, seqs.shape[1] - 1, dtype=torch.int64))
    after = torch.arange(seqs.shape[1], device=seqs.device)[None, :] > index[:, None]
    seqs = seqs.masked_fill(after & found[:, None], pad_id)
    return seqs, index, found


def _texts(tokenizer, prompt_ids: Tensor, seqs: Tensor, prompt_len: int) -> tuple[dict, ...]:
    """Decoded blocks per row. Only the assistant turn is decoded: the prompt's last token
    (`<|cot_start|>`, which opens the reasoning block) plus the generated tokens; the other
    blocks' start tags can only be generated, so the rest of the prompt cannot change them."""
    if tokenizer is None:
        return tuple({} for _ in range(seqs.shape[0]))
    head = tokenizer.decode(prompt_ids[0, -1:].tolist(), skip_special_tokens=False)
    return tuple(extract_texts(head + tokenizer.decode(row[prompt_len:].tolist(),
                                                       skip_special_tokens=False))
                 for row in seqs)


def _kv(cache: DynamicCache) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    layers = cache.layers
    return tuple(layer.keys for layer in layers), tuple(layer.values for layer in layers)


#: Captured decode graphs per model, keyed by (rows, capacity); dropped with the model.
_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The compiled decode step of each model; dropped with the model.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graphed_step(vlm, step: TextDecodeStep, rows: int, capacity: int) -> GraphedDecodeStep:
    graphs = _GRAPHS.setdefault(vlm, {})
    if (rows, capacity) not in graphs:
        graphs[(rows, capacity)] = GraphedDecodeStep(step, rows, capacity)
    return graphs[(rows, capacity)]


def _plan_cache(vlm, rows: int, capacity: int, length: int,
                options: DecodeOptions) -> tuple[TextDecodeStep, StaticKV, DecodeForward]:
    """The plan's decode step, static cache (the graph's own with `cuda_graph`) and the
    forward the loop calls; `length` prompt columns will be filled by the prefill."""
    if options.compile:
        if vlm not in _COMPILED:
            _COMPILED[vlm] = CompiledDecodeStep(TextDecodeStep(vlm))
        compiled = _COMPILED[vlm]
        cache = compiled.step.allocate(rows, capacity)
        return compiled.step, cache, compiled.bind(cache, length)
    step = TextDecodeStep(vlm)
    if options.cuda_graph:
        graph = _graphed_step(vlm, step, rows, capacity)
        graph.open(length)
        return step, graph.cache, lambda tokens, rotation, write_at, _kv_len: graph(
            tokens, rotation, write_at)
    cache = step.allocate(rows, capacity)
    return step, cache, lambda tokens, rotation, write_at, kv_len: step(
        tokens, rotation, cache, write_at, kv_len=kv_len)


def decode_mode(vlm, options: DecodeOptions) -> str:
    """How `vlm`'s decode loop runs under `options`: eager, cuda_graph, compile, or
    "eager (compiling failed: ...)" once compiling failed for this model."""
    if options.cuda_graph:
        return "cuda_graph"
    if not options.compile:
        return "eager"
    compiled = _COMPILED.get(vlm)
    if compiled is not None and compiled.failed is not None:
        return f"eager (compiling failed: {compiled.failed.splitlines()[0]})"
    return "compile"


@dataclass(frozen=True)
class _Prefilled:
    """A prompt prefilled into a decode loop's static cache."""

    logits: Tensor  # (1, V) f32 next-token logits
    positions: Tensor  # (3, 1, L0) mRoPE ids
    step: TextDecodeStep
    cache: StaticKV
    forward: DecodeForward

    @property
    def first_position(self) -> int:
        """mRoPE position of the first decoded token."""
        return int(self.positions.max()) + 1


def _prefill(vlm, prompt: PromptInputs, features: ImageFeatures | None, rows: int,
             max_new_tokens: int, options: DecodeOptions) -> _Prefilled:
    """Positions, vision features (the tower runs here without `features`), and the prompt
    through `prefill.prefill_into` into a static cache of L0 + `max_new_tokens` columns."""
    positions = _prompt_positions(vlm, prompt.input_ids, prompt.image_grid_thw)  # (3, 1, L0)
    if features is None:
        features = encode_frames(vlm.model.visual, prompt.pixel_values, prompt.image_grid_thw,
                                 None, None)
    step, cache, forward = _plan_cache(
        vlm, rows, options.capacity(prompt.length + max_new_tokens), prompt.length, options)
    logits = prefill_into(vlm, prompt.input_ids, positions, features, cache)  # (1, V)
    return _Prefilled(logits, positions, step, cache, forward)


@torch.no_grad()
def generate_reasoning(vlm, prompt: PromptInputs, token_ids: TokenIds, sampling: SamplingConfig,
                       tokenizer=None, generator: torch.Generator | None = None,
                       logits_processor: LogitsProcessor | None = None,
                       decode: DecodeOptions | None = None,
                       image_features: ImageFeatures | None = None,
                       cancel: threading.Event | None = None) -> Phase1Result:
    """Phase 1: sample the reasoning for `sampling.num_rows` rows from one prompt.

    `tokenizer` (optional) decodes the texts; `generator` makes sampling reproducible;
    `logits_processor` (an HF `LogitsProcessor`) runs after the `<iN>` mask, before the warpers;
    `decode` chooses how the loop runs (static cache always; compiled or CUDA graph
    optional);
    `image_features` (from `frame_cache.encode_frames`) replace the vision tower pass (without
    them it runs here, inside the prefill time); the prompt is prefilled by
    `prefill.prefill_into` straight into the decode loop's static cache;
    `cancel` (set from another thread) stops decoding with `PlanCancelled` before the next token.
    Rows that produced no `<|traj_future_start|>` are flagged in `found_future_start` (the
    caller reports them: `Plan.num_truncated_reasoning`).
    """
    options = decode or DecodeOptions()
    rows, prompt_len, device = sampling.num_rows, prompt.length, prompt.input_ids.device
    t0 = device_clock(device)
    pre = _prefill(vlm, prompt, image_features, rows, sampling.max_new_tokens, options)
    t1 = device_clock(device)
    seqs = torch.full((rows, prompt_len + sampling.max_new_tokens), token_ids.pad, device=device)
    seqs[:, :prompt_len] = prompt.input_ids
    sample = _TokenSampler(token_ids, sampling, logits_processor, generator)
    n_new = _decode(pre, pre.logits.expand(rows, -1), seqs, prompt_len, sample, token_ids,
                    options, cancel)
    t2 = device_clock(device)
    seqs, index, found = _locate_future_start(seqs[:, :prompt_len + n_new], prompt_len,
                                              token_ids.traj_future_start, token_ids.pad)
    keys, values = pre.cache.narrow(prompt_len + n_new - 1)
    return Phase1Result(
        sequences=seqs, keys=keys, values=values, future_start_index=index,
        future_start_position=index - prompt_len + pre.first_position, found_future_start=found,
        texts=_texts(tokenizer, prompt.input_ids, seqs, prompt_len), prompt_length=prompt_len,
        num_generated=n_new, prefill_s=t1 - t0, decode_s=t2 - t1)


@torch.no_grad()
def prefill_with_reasoning(vlm, prompt: PromptInputs, reasoning_ids: Tensor,
                           token_ids: TokenIds, tokenizer=None, num_rows: int = 1) -> Phase1Result:
    """Teacher forcing: prompt + a fixed reasoning (R,) ending in `<|traj_future_start|>`.

    One forward; the cache and logits equal step-by-step decoding of the same tokens.
    """
    reasoning = reasoning_ids.reshape(-1).to(torch.int64)
    if reasoning.numel() == 0 or reasoning[-1].item() != token_ids.traj_future_start:
        raise ValueError("reasoning_ids: must end with <|traj_future_start|> "
                         f"({token_ids.traj_future_start})")
    prompt_len, device = prompt.length, prompt.input_ids.device
    t0 = device_clock(device)
    full = torch.cat([prompt.input_ids[0], reasoning.to(device)])[None]  # (1, L)
    positions = _prompt_positions(vlm, full, prompt.image_grid_thw)  # (3, 1, L)
    cache = DynamicCache()
    _forward(vlm, full, positions, cache, prompt)
    if num_rows > 1:
        cache.batch_repeat_interleave(num_rows)
    seqs = full.expand(num_rows, -1).clone()
    keys, values = _kv(cache)
    last = full.shape[1] - 1
    return Phase1Result(
        sequences=seqs, keys=keys, values=values,
        future_start_index=torch.full((num_rows,), last, device=device),
        future_start_position=positions[:, 0, last].max().expand(num_rows).clone(),
        found_future_start=torch.ones(num_rows, dtype=torch.bool, device=device),
        texts=_texts(tokenizer, prompt.input_ids, seqs, prompt_len), prompt_length=prompt_len,
        num_generated=reasoning.numel(), prefill_s=device_clock(device) - t0, decode_s=0.0)
