"""Per-stage plan time on the tiny model: ours against the stock HF path, in the same run.

Setup of performance_anchors.md §0b: tiny random-init model of the released topology, 4 cameras
x 4 frames of 320x576, a fixed 37-token reasoning (forced through a logits processor, so both
paths run their real sampling loops for 38 tokens), 10 Euler flow steps, 1 sample, 1 thread,
fp32. Both paths run on the same weights, inputs and forced tokens:

* stock: what the reference does. HF's slow `Qwen2VLImageProcessor` through the Qwen3-VL
  processor's chat template, HF's unmodified Qwen3-VL modules (`build_vlm(plain=True)`, the
  same weights), `generate()` (sampling, temperature/top-p, its default `DynamicCache`), then
  10 flow steps with the eager `torch` expert backend (the HF-style step that concatenates
  the prefix with the action tokens) on generate's cache.
* ours: `Planner.plan` (uint8 frames embedded by one convolution each, static-cache decode,
  the auto backend), cold: the inputs carry no frame keys, so all 16 frames go through the
  vision tower.
* ours_10hz: the same planner at the node's steady state with 10 Hz cameras: each plan's
  frames are the previous plan's shifted by one frame per camera, with frame keys, so 4 new
  frames go through the vision tower and 12 come from its frame cache (checked per plan).
  The stock path has no such cache: the reference encodes every frame of every plan.
  (bench/frame_cache.py measures the cache alone through the node's buffers.)

Rounds alternate the order (stock first, then ours first); ratios are of minima over rounds.

    python bench/plan.py [--runs 8] [--model DIR] [--json out.json] [--peak-rss] [--stock-shared]
                         [--decode-compile]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    Qwen2VLImageProcessor,
    Qwen3VLProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)

from alpamayo_core.backends import select
from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.inference.plan import PlanInputs
from alpamayo_core.inference.planner import Planner
from alpamayo_core.inference.reasoning import DecodeOptions, SamplingConfig
from alpamayo_core.inputs.prompt import QWEN3_VL_CHAT_TEMPLATE, chat_messages, fuse_history
from alpamayo_core.model import flow_matching
from alpamayo_core.model.vlm import build_vlm

REASONING_TOKENS = 37
MAX_NEW_TOKENS = 64


class ForceTokens(LogitsProcessor):
    """Forces a fixed token sequence, one per decode step (a real logits processor).

    It also notes when it is called: both paths call it once per token, so the time from the
    first to the last call over the calls in between is the decode time per token (forward and
    sampling) of either path, measured the same way.
    """

    def __init__(self, tokens: torch.Tensor, prompt_len: int):
        self.tokens, self.prompt_len = tokens, prompt_len
        self.calls_s: list[float] = []

    def ms_per_token(self) -> float:
        calls, self.calls_s = self.calls_s, []
        return (calls[-1] - calls[0]) * 1e3 / (len(calls) - 1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.calls_s.append(time.perf_counter())
        step = min(input_ids.shape[1] - self.prompt_len, len(self.tokens) - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[step]] = 0.0
        return forced


class MaskBand(LogitsProcessor):
    """The reference's `<iN>` mask: trajectory tokens are never sampled."""

    def __init__(self, start: int, end: int):
        self.start, self.end = start, end

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.start:self.end] = -float("inf")
        return scores


class StopAfterFutureStart(StoppingCriteria):
    """The reference's stop: one token after `<|traj_future_start|>`."""

    def __init__(self, stop_id: int):
        self.stop_id = stop_id

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return input_ids[:, -2] == self.stop_id


class _ImageOnlyProcessor(Qwen3VLProcessor):
    """The Qwen3-VL processor without a video processor (stills only)."""

    attributes = ["image_processor", "tokenizer"]  # noqa: RUF012 (HF class attribute)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kw):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kw)


def reasoning_ids(planner: Planner) -> torch.Tensor:
    ids = planner.loaded.token_ids
    text = planner.loaded.tokenizer("The lead vehicle brakes so the ego car slows down and "
                                    "keeps a safe gap to the car ahead in its lane.")["input_ids"]
    body = (text * 4)[:REASONING_TOKENS - 2]
    return torch.tensor([*body, ids.cot_end, ids.traj_future_start], dtype=torch.int64)


def inputs() -> PlanInputs:
    images = np.random.default_rng(0).integers(0, 255, (4, 4, 320, 576, 3), dtype=np.uint8)
    xyz = np.zeros((16, 3))
    xyz[:, 0] = -np.arange(15, -1, -1)
    return PlanInputs(images, xyz, np.repeat(np.eye(3)[None], 16, 0))


class StockPath:
    """The reference's way through the same model: slow processor, `generate`, eager expert."""

    def __init__(self, planner: Planner, force: ForceTokens, shared_modules: bool = False):
        """`shared_modules`: run on our model's VLM (with its fast vision modules) instead of
        HF's unmodified modules (how this bench measured before the stock path had its own)."""
        cfg, ids = planner.cfg, planner.loaded.token_ids
        self.planner, self.ids = planner, ids
        self.vlm = planner.loaded.model.vlm
        if not shared_modules:
            self.vlm = build_vlm(cfg, ids, plain=True)  # HF's modules, our weights
            self.vlm.load_state_dict(planner.loaded.model.vlm.state_dict())
        self.processor = _ImageOnlyProcessor(
            image_processor=Qwen2VLImageProcessor(
                min_pixels=cfg.images.min_pixels, max_pixels=cfg.images.max_pixels,
                patch_size=cfg.vision.patch_size, merge_size=cfg.vision.spatial_merge_size,
                temporal_patch_size=cfg.vision.temporal_patch_size,
                image_mean=list(cfg.images.image_mean), image_std=list(cfg.images.image_std)),
            tokenizer=planner.loaded.tokenizer, chat_template=QWEN3_VL_CHAT_TEMPLATE)
        self.processors = LogitsProcessorList(
            [MaskBand(ids.traj_token_start, ids.traj_token_end), force])
        self.stop = StoppingCriteriaList([StopAfterFutureStart(ids.traj_future_start)])
        self.expert = select("torch", planner.loaded.model.denoise_step(), planner.device,
                             fallback=False, n_action=cfg.n_waypoints).backend

    def preprocess(self, plan_inputs: PlanInputs) -> dict:
        frames = plan_inputs.images_rgb.reshape(-1, *plan_inputs.images_rgb.shape[2:])
        messages = chat_messages(len(frames), self.planner.cfg.history_tokenizer.num_tokens)
        for item, frame in zip(messages[1]["content"], frames, strict=False):
            item["image"] = frame
        batch = self.processor.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=False, continue_final_message=True,
            return_dict=True, return_tensors="pt")
        xyz = torch.as_tensor(plan_inputs.history_xyz_m, dtype=torch.float32)
        history = self.planner._history_tokenizer.encode(xyz)
        batch["input_ids"] = fuse_history(batch["input_ids"], history, self.ids.traj_history)
        return dict(batch)

    def generate(self, batch: dict, seed: int):
        torch.manual_seed(seed)
        return self.vlm.generate(
            **batch, do_sample=True, temperature=0.6, top_p=0.98, top_k=None,
            max_new_tokens=MAX_NEW_TOKENS, logits_processor=self.processors,
            stopping_criteria=self.stop, pad_token_id=self.ids.pad, eos_token_id=self.ids.im_end,
            return_dict_in_generate=True)

    def flow(self, batch: dict, out, seed: int) -> torch.Tensor:
        cache = out.past_key_values
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        positions, _ = self.vlm.model.get_rope_index(batch["input_ids"],
                                                     image_grid_thw=batch["image_grid_thw"])
        prompt_len = batch["input_ids"].shape[1]
        stop = int((out.sequences[0, prompt_len:] == self.ids.traj_future_start).nonzero()[0])
        first = positions.max() + 1 + stop + 1
        prefix = self.planner.loaded.model.expert.build_prefix(
            kv, first_position=first.reshape(1), n_action=self.planner.cfg.n_waypoints,
            valid_len=torch.tensor([prompt_len + stop + 1]))
        noise = flow_matching.make_noise(1, self.planner.cfg.n_waypoints,
                                         generator=torch.Generator().manual_seed(seed))
        self.expert.bind(prefix)
        return self.expert.sample(noise, self.planner.flow)

    def plan(self, plan_inputs: PlanInputs, seed: int) -> dict[str, float]:
        marks = [time.perf_counter()]
        batch = self.preprocess(plan_inputs)
        marks.append(time.perf_counter())
        out = self.generate(batch, seed)
        marks.append(time.perf_counter())
        self.flow(batch, out, seed)
        marks.append(time.perf_counter())
        generated = out.sequences.shape[1] - batch["input_ids"].shape[1]
        if generated != REASONING_TOKENS + 1:
            raise RuntimeError(f"stock: expected {REASONING_TOKENS + 1} tokens, got {generated}")
        ms = np.diff(marks) * 1e3
        return {"preprocess": ms[0], "vision+prefill+decode": ms[1], "flow": ms[2],
                "decode/token": self.processors[1].ms_per_token(),
                "total": marks[-1] * 1e3 - marks[0] * 1e3}


class Drive:
    """The 10 Hz steady state: per camera a stream of frames; the plan of round i sees frames
    i..i+F-1 of each camera, keyed (camera, frame index) as the node keys (camera, stamp)."""

    def __init__(self, rounds: int, template: PlanInputs):
        cams, self.frames = template.images_rgb.shape[:2]
        rng = np.random.default_rng(1)
        self.stream = rng.integers(0, 255, (cams, rounds + self.frames,
                                            *template.images_rgb.shape[2:]), dtype=np.uint8)
        self.template = template

    def inputs(self, i: int) -> PlanInputs:
        window = range(i, i + self.frames)
        keys = tuple((cam, j) for cam in range(self.stream.shape[0]) for j in window)
        frames = np.ascontiguousarray(self.stream[:, i:i + self.frames])  # as the node's
        return dataclasses.replace(self.template, images_rgb=frames, frame_keys=keys)


class EncodedFrames:
    """Counts the images the vision tower embeds (a hook on its patch embedding)."""

    def __init__(self, planner: Planner):
        self.count = 0
        planner.loaded.model.vlm.model.visual.patch_embed.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.count += args[0].shape[0]  # (N, 3, h, w) uint8 images

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


def ours_plan(planner: Planner, plan_inputs: PlanInputs, seed: int, force,
              encoded: EncodedFrames, expect_encoded: int | None = None) -> dict[str, float]:
    """One of our plans; checks how many frames went through the vision tower."""
    encoded.take()
    plan = planner.plan(plan_inputs, seed=seed, logits_processor=force)
    frames = encoded.take()
    expected = plan_inputs.images_rgb.shape[0] * plan_inputs.images_rgb.shape[1] \
        if plan_inputs.frame_keys is None else expect_encoded
    if expected is not None and frames != expected:
        raise RuntimeError(f"ours: {frames} frames encoded, expected {expected}")
    if plan.num_generated_tokens != REASONING_TOKENS + 1:
        raise RuntimeError(f"ours: expected {REASONING_TOKENS + 1} tokens, got "
                           f"{plan.num_generated_tokens}")
    t = dict(plan.timings_ms)
    t["vision+prefill+decode"] = t["vision"] + t["prefill"] + t["decode"]
    t["decode/token"] = force.ms_per_token()
    t["flow/step"] = t["flow"] / planner.flow.num_steps
    return t


def setup(model_dir: Path, decode: DecodeOptions | None = None):
    torch.set_num_threads(1)
    planner = Planner.from_pretrained(model_dir, decode=decode,
                                      sampling=SamplingConfig(max_new_tokens=MAX_NEW_TOKENS))
    plan_inputs = inputs()
    force = ForceTokens(reasoning_ids(planner), planner.preprocess(plan_inputs).length)
    return planner, plan_inputs, force


def run(model_dir: Path, runs: int, stock_shared: bool = False,
        compiled: bool = False) -> dict[str, dict[str, list[float]]]:
    """Interleaved rounds of the stock path and ours (and, with `compiled`, ours with the
    compiled decode step, sharing the model and the expert backend); per path and stage the
    samples in ms. Each round reverses the previous round's order."""
    planner, plan_inputs, force = setup(model_dir)
    stock = StockPath(planner, force, stock_shared)
    drive = Drive(runs + 1, plan_inputs)
    encoded = EncodedFrames(planner)
    ours = {"ours": planner, "ours_10hz": planner}
    if compiled:
        ours["ours_compiled"] = planner.with_settings(decode=DecodeOptions(compile=True))
    names = ["stock", *ours]
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for i in range(runs + 1):  # round 0 warms every path up (and compiles, fills the cache)
        for name in (names if i % 2 else names[::-1]):
            if name == "stock":
                t = stock.plan(plan_inputs, i)
            elif name == "ours_10hz":  # after round 0: one new frame per camera
                t = ours_plan(planner, drive.inputs(i), i, force, encoded,
                              None if i == 0 else drive.stream.shape[0])
            else:
                t = ours_plan(ours[name], plan_inputs, i, force, encoded)
            for k, v in t.items():
                if i:
                    samples[name].setdefault(k, []).append(float(v))
    print(f"prompt {force.prompt_len} tokens, reasoning {REASONING_TOKENS} tokens, "
          f"{planner.flow.num_steps} flow steps, our backend {planner.backend_name}, "
          f"{runs} interleaved rounds, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    return samples


STAGES = ("preprocess", "vision", "prefill", "decode", "decode/token", "vision+prefill+decode",
          "flow", "flow/step", "trajectory", "total")


def report(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per stage: min and median of every path, and each of our paths' ratio of minima to
    the stock path's (where the stock path has that stage)."""
    ours = [name for name in samples if name != "stock"]
    header = f"{'stage':<22}" + "".join(f"{name + ' min':>19}{'median':>9}"
                                        for name in [*ours, "stock"])
    print(header + "".join(f"{'ratio ' + name:>20}" for name in ours))
    rows: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        row, line = {}, f"{stage:<22}"
        for name in [*ours, "stock"]:
            values = samples[name].get(stage)
            if values:
                row[f"{name}_min_ms"] = min(values)
                row[f"{name}_median_ms"] = statistics.median(values)
                line += f"{min(values):19.2f}{statistics.median(values):9.2f}"
            else:
                line += f"{'':>28}"
        if "stock_min_ms" in row:
            for name in ours:
                row[f"{name}_ratio_of_minima"] = row[f"{name}_min_ms"] / row["stock_min_ms"]
                line += f"{row[f'{name}_ratio_of_minima']:19.2f}x"
        print(line)
        rows[stage] = row
    for name in ours:
        print(f"end to end: {name} {rows['total'][f'{name}_ratio_of_minima']:.2f}x the stock "
              "path (ratio of minima, same run)")
    return rows


def _peak_rss_child(model_dir: str, path: str, runs: int, decode, queue) -> None:
    planner, plan_inputs, force = setup(Path(model_dir), decode)
    stock = StockPath(planner, force) if path == "stock" else None
    encoded = EncodedFrames(planner)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(runs):
        stock.plan(plan_inputs, i) if stock else ours_plan(planner, plan_inputs, i, force,
                                                           encoded)
    queue.put((before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def peak_rss(model_dir: Path, runs: int = 3,
             decode: DecodeOptions | None = None) -> dict[str, dict[str, float]]:
    """Peak RSS (MiB) of a fresh process that loads the model and runs only one path, and
    the peak reached by the end of loading (a plan adds only what exceeds it)."""
    ctx, out = multiprocessing.get_context("spawn"), {}
    for path in ("ours", "stock"):
        queue = ctx.Queue()
        child = ctx.Process(target=_peak_rss_child,
                            args=(str(model_dir), path, runs, decode, queue))
        child.start()
        before, after = queue.get()
        child.join()
        out[path] = {"after_load_mib": before / 1024, "peak_mib": after / 1024}
        print(f"peak RSS {path}: {after / 1024:.0f} MiB ({before / 1024:.0f} MiB after loading "
              f"the model, +{(after - before) / 1024:.0f} MiB over {runs} plans)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=8, help="interleaved rounds (after one warm-up)")
    p.add_argument("--model", type=Path, help="model folder (default: build the tiny one)")
    p.add_argument("--json", type=Path)
    p.add_argument("--peak-rss", action="store_true", help="also measure peak RSS per path")
    p.add_argument("--stock-shared", action="store_true",
                   help="stock path on our VLM's modules (the pre-plain baseline)")
    p.add_argument("--decode-compile", action="store_true",
                   help="also time ours with DecodeOptions(compile=True) in the same rounds "
                        "(the warm-up round compiles); --peak-rss then measures that path")
    args = p.parse_args()
    decode = DecodeOptions(compile=args.decode_compile)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or make_tiny(Path(tmp) / "tiny")
        rows = report(run(model, args.runs, args.stock_shared, args.decode_compile))
        if args.peak_rss:
            rows["peak_rss"] = peak_rss(model, decode=decode)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
