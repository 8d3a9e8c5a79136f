"""The static-cache decode loop against the HF path it replaced (HF forward + DynamicCache).

The oracle below is the previous loop: every token through `Qwen3VLForConditionalGeneration`
with a growing `DynamicCache` and a host read of the stop flags per token. The new loop must give
the same token ids (sampled, seeded), logits within float rounding and the same K/V.
"""

import copy

import pytest
import torch
from tiny_vlm import random_frames, tiny_prompt, tiny_vlm
from transformers import DynamicCache, TemperatureLogitsWarper, TopPLogitsWarper
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb

from alpamayo_core.inference.decode_step import GraphedDecodeStep, TextDecodeStep
from alpamayo_core.inference.reasoning import (
    DecodeOptions,
    SamplingConfig,
    _forward,
    _prompt_positions,
    generate_reasoning,
)
from alpamayo_core.inference.top_p import sample_top_p, sample_top_p_sorted


@pytest.fixture(scope="module")
def setup():
    tok, ids, cfg, vlm = tiny_vlm()
    prompt = tiny_prompt(tok, ids, cfg, random_frames(2, 2))
    return ids, vlm, prompt


class Recorder:
    """A logits processor that records the logits it sees (after the `<iN>` mask)."""

    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append(scores.clone())
        return scores


@torch.no_grad()
def hf_decode(vlm, prompt, ids, sampling, seed, processor):
    """The previous decode loop (oracle): HF forward per token, DynamicCache, host stop check."""
    rows, prompt_len = sampling.num_rows, prompt.length
    positions = _prompt_positions(vlm, prompt.input_ids, prompt.image_grid_thw)
    cache = DynamicCache()
    logits = _forward(vlm, prompt.input_ids, positions, cache, prompt)
    cache.batch_repeat_interleave(rows)
    logits = logits.expand(rows, -1)
    seqs = torch.full((rows, prompt_len + sampling.max_new_tokens), ids.pad)
    seqs[:, :prompt_len] = prompt.input_ids
    generator = torch.Generator().manual_seed(seed)
    warpers = [TemperatureLogitsWarper(sampling.temperature), TopPLogitsWarper(sampling.top_p)]

    def sample(input_ids, logits):  # HF's sampling step, as generate() runs it
        scores = processor(input_ids, logits.clone().index_fill_(1, band, -float("inf")))
        for warp in warpers:
            scores = warp(input_ids, scores)
        return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)

    band = torch.arange(ids.traj_token_start, ids.traj_token_end)
    done = torch.zeros(rows, dtype=torch.bool)
    seen_stop = torch.zeros(rows, dtype=torch.bool)
    first = int(positions.max()) + 1
    for step in range(sampling.max_new_tokens):
        at = prompt_len + step
        nxt = torch.where(done, torch.full((rows,), ids.pad), sample(seqs[:, :at], logits))
        seqs[:, at] = nxt
        done |= seen_stop | (nxt == ids.im_end)
        seen_stop |= nxt == ids.traj_future_start
        if bool(done.all()) or step == sampling.max_new_tokens - 1:
            break
        pos = torch.full((3, rows, 1), first + step, dtype=torch.int64)
        logits = _forward(vlm, nxt[:, None], pos, cache)
    n = step + 1
    keys = tuple(layer.keys for layer in cache.layers)
    return seqs[:, :prompt_len + n], keys, n


class StopAfter(Recorder):
    """Records logits, forces `<|traj_future_start|>` at generated step `k` of every row and
    forbids it and `<|im_end|>` before (so that rows of a random model run to step `k`)."""

    def __init__(self, prompt_len, k, ids):
        super().__init__()
        self.prompt_len, self.k, self.stop_id = prompt_len, k, ids.traj_future_start
        self.im_end = ids.im_end

    def __call__(self, input_ids, scores):
        super().__call__(input_ids, scores)
        scores[:, [self.stop_id, self.im_end]] = -float("inf")
        if input_ids.shape[1] - self.prompt_len == self.k:
            scores[:] = -float("inf")
            scores[:, self.stop_id] = 0.0
        return scores


@pytest.mark.parametrize("rows, check_every", [(1, 0), (3, 0), (3, 5)])
def test_sampled_ids_logits_and_cache_equal_the_hf_loop(setup, rows, check_every):
    ids, vlm, prompt = setup
    sampling = SamplingConfig(max_new_tokens=24, num_traj_samples=rows)
    ours_rec, ref_rec = (StopAfter(prompt.length, 11, ids) for _ in range(2))
    ours = generate_reasoning(vlm, prompt, ids, sampling,
                              generator=torch.Generator().manual_seed(7),
                              logits_processor=ours_rec,
                              decode=DecodeOptions(stop_check_every=check_every))
    ref_seqs, ref_keys, ref_n = hf_decode(vlm, prompt, ids, sampling, 7, ref_rec)
    assert (ours.num_generated, ref_n) == (13, 13)  # 11 sampled, the stop, one extra
    assert torch.equal(ours.sequences[:, :prompt.length + 12], ref_seqs[:, :prompt.length + 12])
    assert ours.sequences[:, prompt.length:prompt.length + 11].ne(ids.pad).all()
    # with reads every 5 tokens the loop samples up to the next read (15) and discards the rest
    assert (len(ours_rec.seen), len(ref_rec.seen)) == (15 if check_every == 5 else 13, 13)
    for a, b in zip(ours_rec.seen[:13], ref_rec.seen, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
    assert ours.cache_length == ref_keys[0].shape[2] == prompt.length + 12
    for a, b in zip(ours.keys, ref_keys, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def _compiled_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def test_compiled_decode_equals_the_hf_loop_and_compiles_once_per_bucket(setup):
    """`DecodeOptions(compile=True)`: the same sampled ids as the HF loop, logits and K/V
    within float rounding, for two plans that share one compiled graph (one bucket)."""
    ids, vlm, prompt = setup
    vlm = copy.deepcopy(vlm)  # a model of its own: this test counts its compiles
    sampling = SamplingConfig(max_new_tokens=24, num_traj_samples=3)
    ref_rec = StopAfter(prompt.length, 11, ids)
    ref_seqs, ref_keys, _ = hf_decode(vlm, prompt, ids, sampling, 7, ref_rec)
    graphs_before = _compiled_graphs()
    for _ in range(2):
        rec = StopAfter(prompt.length, 11, ids)
        ours = generate_reasoning(vlm, prompt, ids, sampling,
                                  generator=torch.Generator().manual_seed(7),
                                  logits_processor=rec, decode=DecodeOptions(compile=True))
        assert ours.num_generated == 13
        assert torch.equal(ours.sequences[:, :prompt.length + 12],
                           ref_seqs[:, :prompt.length + 12])
        for a, b in zip(rec.seen, ref_rec.seen, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
        for a, b in zip(ours.keys, ref_keys, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert _compiled_graphs() - graphs_before == 1


def test_a_decode_step_that_cannot_compile_decodes_eagerly(setup, tmp_path, monkeypatch,
                                                           caplog):
    """No usable C++ compiler for inductor (a name that does not exist, an empty inductor
    cache): the plan still decodes, eagerly, with the same ids, and the log says why."""
    ids, vlm, prompt = setup
    vlm = copy.deepcopy(vlm)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    sampling = SamplingConfig(max_new_tokens=8, greedy=True)
    eager = generate_reasoning(vlm, prompt, ids, sampling)
    with torch._inductor.config.patch({"cpp.cxx": ("no-such-cxx-compiler",),
                                       "fx_graph_cache": False}):
        failed = generate_reasoning(vlm, prompt, ids, sampling,
                                    decode=DecodeOptions(compile=True))
    assert torch.equal(failed.sequences, eager.sequences)
    assert "compiling the decode step failed" in caplog.text
    assert "decoding eagerly" in caplog.text


def test_greedy_equals_hf_generate(setup):
    """Unforced greedy decoding to max_new_tokens: ids equal HF `generate`'s."""
    ids, vlm, prompt = setup
    sampling = SamplingConfig(max_new_tokens=16, greedy=True)
    band = torch.zeros(vlm.config.text_config.vocab_size, dtype=torch.bool)
    band[ids.traj_token_start:ids.traj_token_end] = True
    ours = generate_reasoning(vlm, prompt, ids, sampling)
    ref = vlm.generate(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask,
                       pixel_values=prompt.pixel_values, image_grid_thw=prompt.image_grid_thw,
                       do_sample=False, max_new_tokens=16, suppress_tokens=band.nonzero()[:, 0],
                       eos_token_id=ids.im_end, pad_token_id=ids.pad)
    n = ref.shape[1]
    assert n > prompt.length
    assert torch.equal(ours.sequences[0, :n], ref[0])


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.98, 1.0])
def test_top_p_sampler_picks_hf_tokens_for_the_same_seed(top_p):
    """Peaked and flat rows, 300 seeds each: the same ids as sort + filter + multinomial,
    with the full-vocabulary race winner falling in the dropped tail for some draws."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.cat([torch.randn(2, 4566, generator=gen) * scale for scale in (0.5, 4.0)])
    tail_wins = 0
    for seed in range(300):
        ours = sample_top_p(scores, top_p, torch.Generator().manual_seed(seed))
        ref = sample_top_p_sorted(scores, top_p, torch.Generator().manual_seed(seed))
        assert torch.equal(ours, ref), seed
        race = torch.empty_like(scores).exponential_(
            1, generator=torch.Generator().manual_seed(seed))
        tail_wins += int((scores.softmax(-1) / race).argmax(-1).ne(ref).sum())
    assert (tail_wins > 0) == (top_p < 1.0)  # the exact fallback ran (and was needed)


def test_cache_capacity_rounds_only_for_graphs_and_compiled_steps():
    assert DecodeOptions().capacity(3013) == 3013
    assert DecodeOptions(cuda_graph=True, capacity_multiple=256).capacity(3013) == 3072
    assert DecodeOptions(compile=True, capacity_multiple=512).capacity(3013) == 3072
    with pytest.raises(ValueError, match="decode.stop_check_every"):
        DecodeOptions(stop_check_every=-1)
    with pytest.raises(ValueError, match="decode: choose one of compile and cuda_graph"):
        DecodeOptions(compile=True, cuda_graph=True)


def test_rope_rotation_matrix_equals_hf_rotary(setup):
    _ids, vlm, _prompt = setup
    step = TextDecodeStep(vlm)
    rotations = step.rope_table(first_position=40, count=5)  # (5, D, D)
    x = torch.randn(5, 3, step.head_dim)  # (N, heads, D)
    positions = torch.arange(40, 45).view(1, 1, -1).expand(3, 1, -1)
    cos, sin = step.rotary(x, positions)  # (1, N, D)
    ref, _ = apply_rotary_pos_emb(x, x, cos[0], sin[0], unsqueeze_dim=1)
    torch.testing.assert_close(x @ rotations, ref, rtol=0, atol=1e-6)


def test_cuda_graph_refuses_a_cpu_model(setup):
    _ids, vlm, _prompt = setup
    with pytest.raises(ValueError, match="decode.cuda_graph: needs a CUDA device"):
        GraphedDecodeStep(TextDecodeStep(vlm), rows=1, capacity=256)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (inductor on CUDA)")
def test_compiled_decode_equals_eager_on_gpu(setup):
    ids, vlm, prompt = setup
    vlm = copy.deepcopy(vlm).to("cuda")
    prompt = type(prompt)(**{k: getattr(prompt, k).to("cuda") for k in
                             ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")})
    sampling = SamplingConfig(max_new_tokens=24, num_traj_samples=2, greedy=True)
    runs = [generate_reasoning(vlm, prompt, ids, sampling, decode=DecodeOptions(compile=c))
            for c in (False, True, True)]  # the second compiled plan reuses the graph
    for compiled in runs[1:]:
        assert torch.equal(compiled.sequences, runs[0].sequences)
        for a, b in zip(compiled.keys, runs[0].keys, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graph capture)")
def test_cuda_graph_decode_equals_eager_on_gpu(setup):
    ids, vlm, prompt = setup
    vlm = copy.deepcopy(vlm).to("cuda")  # the module's fixture stays on the CPU
    prompt = type(prompt)(**{k: getattr(prompt, k).to("cuda") for k in
                             ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")})
    sampling = SamplingConfig(max_new_tokens=24, num_traj_samples=2, greedy=True)
    runs = [generate_reasoning(vlm, prompt, ids, sampling, decode=DecodeOptions(cuda_graph=g))
            for g in (False, True, True)]  # the second graphed plan replays the captured graph
    for graphed in runs[1:]:
        assert torch.equal(graphed.sequences, runs[0].sequences)
        for a, b in zip(graphed.keys, runs[0].keys, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_layout_memo_is_exact_and_recomputes_for_new_grids_or_weights(setup):
    _ids, vlm, prompt = setup
    visual, grid = vlm.model.visual, prompt.image_grid_thw
    with torch.no_grad():
        first = visual.fast_pos_embed_interpolate(grid)
        assert visual.fast_pos_embed_interpolate(grid) is first  # remembered
        assert torch.equal(first, visual.fast_pos_embed_interpolate.fn(grid))  # exact
        assert torch.equal(visual.rot_pos_emb(grid), visual.rot_pos_emb.fn(grid))
        other = visual.fast_pos_embed_interpolate(grid[:2])
        assert other.shape[0] < first.shape[0]  # new grids recompute
        visual.pos_embed.weight.mul_(2.0)  # new weights recompute
        torch.testing.assert_close(visual.fast_pos_embed_interpolate(grid[:2]), 2 * other)
        visual.pos_embed.weight.mul_(0.5)
