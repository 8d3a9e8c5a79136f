"""`Planner`: camera frames + ego history in, a `Plan` (K trajectories, texts, timings) out.

One plan reads top to bottom:

    validate inputs -> preprocess (images, history tokens, prompt)
    -> phase 1: VLM prefill + sampled reasoning until one token after <|traj_future_start|>
    -> expert prefix (per-layer K/V, positions, additive mask)
    -> phase 2: flow matching over the expert backend (noise at t=0 -> actions at t=1)
    -> unicycle integration -> selection -> `Plan`

Glossary: C cameras, F frames per camera, N history poses, B = K trajectory rows
(num_traj_sets x num_traj_samples), T waypoints, P cached prefix tokens.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor

from alpamayo_core.backends import BackendSelection, ExpertBackend, select
from alpamayo_core.inference.frame_cache import FrameEncodingCache, ImageFeatures, encode_frames
from alpamayo_core.inference.plan import Plan, PlanInputs
from alpamayo_core.inference.reasoning import (
    DecodeOptions,
    Phase1Result,
    SamplingConfig,
    check_cancel,
    generate_reasoning,
)
from alpamayo_core.inference.selection import select_medoid
from alpamayo_core.inference.timing import device_clock
from alpamayo_core.inputs.images import preprocess_images
from alpamayo_core.inputs.prompt import PromptInputs, build_prompt
from alpamayo_core.inputs.tokens import HistoryDeltaTokenizer
from alpamayo_core.io.model_io import LoadedModel, load_model
from alpamayo_core.model import flow_matching
from alpamayo_core.model.config import FlowConfig

LOG = logging.getLogger(__name__)


class Planner:
    """Runs Alpamayo-R1 plans on one device. Not thread-safe: one `plan` call at a time."""

    def __init__(self, loaded: LoadedModel, sampling: SamplingConfig | None = None,
                 flow: FlowConfig | None = None, backend: str | ExpertBackend = "auto",
                 backend_options: dict[str, object] | None = None,
                 backend_fallback: bool = True,
                 backend_selection: BackendSelection | None = None,
                 decode: DecodeOptions | None = None,
                 frame_cache: FrameEncodingCache | None = None):
        """`backend`: an expert backend name or an already built `ExpertBackend` to share.

        A name goes through `backends.select`: "auto" = the fastest (by a timed trial at this
        planner's rows) available backend on the model's device that passes a parity
        self-check against the eager torch step; a named
        one is checked too and, when it fails or cannot be built, replaced by the next of the
        auto order if `backend_fallback`, else BackendUnavailable. `backend_options` reach the
        backends (an option no backend takes is a ValueError). `backend_selection` records how
        the backend was chosen (kept when sharing a backend). `decode` says how the reasoning
        decode loop runs (e.g. `DecodeOptions(cuda_graph=True)` on CUDA); outputs do not
        depend on it. `frame_cache` keeps vision-tower outputs of recent frames (default: one
        plan's worth, C x F images) for inputs that carry `frame_keys`.
        """
        self.loaded = loaded
        self.cfg = loaded.cfg
        self.sampling = sampling or SamplingConfig()
        self.flow = flow or self.cfg.flow
        self.decode = decode or DecodeOptions()
        self.frame_cache = frame_cache or FrameEncodingCache(
            len(self.cfg.images.cameras) * len(self.cfg.images.frame_offsets_s))
        self._model = loaded.model
        self._history_tokenizer = HistoryDeltaTokenizer(self.cfg.history_tokenizer,
                                                        loaded.token_ids.hist_token_start)
        if isinstance(backend, ExpertBackend):
            self._expert, self.backend_selection = backend, backend_selection
        else:
            self.backend_selection = select(
                backend, self._model.denoise_step(), self._model.device,
                fallback=backend_fallback, n_action=self.cfg.n_waypoints,
                trial_batch=self.sampling.num_rows, **(backend_options or {}))
            self._expert = self.backend_selection.backend
        LOG.info("expert backend: %s", self._expert.name)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str = "cpu",
                        dtype: str | None = None, **kwargs) -> Planner:
        """Load a model folder (see `model_io`) and wrap it."""
        return cls(load_model(model_dir, device=device, dtype=dtype), **kwargs)

    @property
    def model_id(self) -> str:
        return self.loaded.model_id

    @property
    def device(self) -> torch.device:
        return self._model.device

    @property
    def backend_name(self) -> str:
        return self._expert.name

    def with_settings(self, sampling: SamplingConfig | None = None,
                      flow: FlowConfig | None = None) -> Planner:
        """A planner sharing this one's weights with other sampling/flow settings."""
        return Planner(self.loaded, sampling or self.sampling, flow or self.flow, self._expert,
                       backend_selection=self.backend_selection, decode=self.decode,
                       frame_cache=self.frame_cache)

    def _ms_since(self, start: float) -> float:
        return (device_clock(self.device) - start) * 1e3

    # -- inputs -------------------------------------------------------------------------------

    def validate(self, inputs: PlanInputs) -> None:
        """Raise ValueError naming the field for inputs this model cannot plan from."""
        images, cams = inputs.images_rgb, self.cfg.images
        expected = (len(cams.cameras), len(cams.frame_offsets_s))
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 5:
            raise ValueError("images_rgb: expected a uint8 array (C, F, H, W, 3), got "
                             f"{getattr(images, 'dtype', type(images))} "
                             f"{getattr(images, 'shape', '')}")
        if images.shape[:2] != expected or images.shape[-1] != 3:
            raise ValueError(f"images_rgb: expected ({expected[0]} cameras, {expected[1]} frames"
                             f", H, W, 3) in {cams.cameras} order, got {images.shape}")
        n = self.cfg.history_tokenizer.num_steps
        xyz, rot = np.asarray(inputs.history_xyz_m), np.asarray(inputs.history_rot)
        if xyz.shape != (n, 3) or rot.shape != (n, 3, 3):
            raise ValueError(f"history_xyz_m/history_rot: expected ({n}, 3) and ({n}, 3, 3), "
                             f"got {xyz.shape} and {rot.shape}")
        if not (np.isfinite(xyz).all() and np.isfinite(rot).all()):
            raise ValueError("history_xyz_m/history_rot: contain NaN or inf")
        orthogonality = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max()
        if orthogonality > 1e-3:
            raise ValueError(f"history_rot: not rotation matrices (|R R^T - I| = "
                             f"{orthogonality:.2g})")

    def preprocess(self, inputs: PlanInputs) -> PromptInputs:
        """Images -> patches, history -> 48 tokens, fused into the chat prompt."""
        frames = torch.from_numpy(np.ascontiguousarray(inputs.images_rgb))  # (C, F, H, W, 3)
        images = preprocess_images(frames.permute(0, 1, 4, 2, 3), self.cfg.images,
                                   self.cfg.vision, fold_time=True)  # channels-last view
        xyz = torch.as_tensor(np.asarray(inputs.history_xyz_m), dtype=torch.float32)
        history_ids = self._history_tokenizer.encode(xyz)  # (48,)
        prompt = build_prompt(self.loaded.tokenizer, self.loaded.token_ids, images, history_ids,
                              num_history_tokens=self.cfg.history_tokenizer.num_tokens)
        return _to_device(prompt, self.device, self._model.compute_dtype)

    # -- the plan -----------------------------------------------------------------------------

    @torch.inference_mode()
    def plan(self, inputs: PlanInputs, seed: int | None = None,
             noise: torch.Tensor | None = None,
             logits_processor: LogitsProcessor | None = None,
             cancel: threading.Event | None = None) -> Plan:
        """One plan.

        Args:
            inputs: validated by `validate`.
            seed: fixes reasoning sampling and flow noise (when None, a fresh seed from
                `secrets`: torch's global RNG is neither read nor reseeded).
            noise: (B, T, 2) flow noise at t=0, overriding the seeded draw.
            logits_processor: an HF `LogitsProcessor` applied during reasoning after the
                `<iN>` mask (constrained or forced decoding, e.g. a fixed reasoning).
            cancel: set from another thread to stop the plan: checked between stages, before
                every reasoning token and every flow step; raises `PlanCancelled`.
        """
        self.validate(inputs)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        prompt = self.preprocess(inputs)
        timings["preprocess"] = self._ms_since(start)
        check_cancel(cancel, "preprocessing")
        mark = device_clock(self.device)
        features = self._encode(inputs, prompt)
        timings["vision"] = self._ms_since(mark)
        generator = torch.Generator(self.device)
        generator.manual_seed(seed if seed is not None else secrets.randbits(63))
        phase1 = generate_reasoning(self._model.vlm, prompt, self.loaded.token_ids,
                                    self.sampling, tokenizer=self.loaded.tokenizer,
                                    generator=generator, logits_processor=logits_processor,
                                    decode=self.decode, image_features=features,
                                    cancel=cancel)
        timings["prefill"], timings["decode"] = phase1.prefill_s * 1e3, phase1.decode_s * 1e3
        mark = device_clock(self.device)
        actions = self._flow(phase1, generator, noise, cancel)  # (B, T, 2) normalised
        timings["flow"] = self._ms_since(mark)
        mark = time.perf_counter()
        plan = self._assemble(inputs, phase1, actions)
        timings["trajectory"] = self._ms_since(mark)
        timings["total"] = self._ms_since(start)
        return dataclasses.replace(plan, timings_ms=timings)

    def _encode(self, inputs: PlanInputs, prompt: PromptInputs) -> ImageFeatures:
        """Vision features; frames with `frame_keys` seen in recent plans come from the cache."""
        keys = inputs.frame_keys
        if keys is not None:
            grids = [tuple(g) for g in prompt.image_grid_thw.tolist()]
            if len(keys) != len(grids):
                raise ValueError(f"frame_keys: expected {len(grids)} keys (C x F), got "
                                 f"{len(keys)}")
            keys = [(key, grid) for key, grid in zip(keys, grids, strict=True)]
        return encode_frames(self._model.vlm.model.visual, prompt.pixel_values,
                             prompt.image_grid_thw, keys, self.frame_cache if keys else None)

    def _flow(self, phase1: Phase1Result, generator: torch.Generator,
              noise: torch.Tensor | None, cancel: threading.Event | None) -> torch.Tensor:
        """(B, T, 2) normalised actions. With `cancel`, the generic sampler runs over the
        backend's `velocity` so the event is checked before every step (a backend's own
        `sample` fast path, e.g. ONNX Runtime io-binding, has no such hook)."""
        rows, n_act = phase1.sequences.shape[0], self.cfg.n_waypoints
        prefix = self._model.expert.build_prefix(
            list(zip(phase1.keys, phase1.values, strict=True)),
            first_position=phase1.future_start_position + 1, n_action=n_act,
            valid_len=phase1.future_start_index + 1)
        if noise is None:
            noise = flow_matching.make_noise(rows, n_act, generator=generator,
                                             device=self.device)
        elif tuple(noise.shape) != (rows, n_act, 2):
            raise ValueError(f"noise: expected ({rows}, {n_act}, 2), got {tuple(noise.shape)}")
        self._expert.bind(prefix)
        noise = noise.to(self.device, torch.float32)
        if cancel is None:
            return self._expert.sample(noise, self.flow)
        self._expert.check_batch(noise)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            check_cancel(cancel, "flow matching")
            return self._expert.velocity(x, t)

        return flow_matching.sample(velocity, noise, self.flow)

    def _assemble(self, inputs: PlanInputs, phase1: Phase1Result,
                  actions: torch.Tensor) -> Plan:
        rows = actions.shape[0]
        xyz = torch.as_tensor(np.asarray(inputs.history_xyz_m), dtype=torch.float32,
                              device=self.device).expand(rows, -1, -1)
        rot = torch.as_tensor(np.asarray(inputs.history_rot), dtype=torch.float32,
                              device=self.device).expand(rows, -1, -1, -1)
        traj = self._model.action_space.action_to_traj(actions.float(), xyz, rot)
        xyz_m = traj.xyz.double().cpu().numpy()  # (B, T, 3)
        dt_s = self.cfg.action_space.dt_s
        return Plan(
            t0_ns=int(inputs.t0_ns), xyz_m=xyz_m, yaw_rad=_np(traj.yaw),
            speed_mps=_np(traj.speed), accel_mps2=_np(traj.accel),
            curvature_1pm=_np(traj.curvature),
            time_from_start_s=dt_s * np.arange(1, xyz_m.shape[1] + 1),
            selected=select_medoid(xyz_m),
            cot=tuple(t["cot"] for t in phase1.texts),
            meta_action=tuple(t["meta_action"] for t in phase1.texts),
            answer=tuple(t["answer"] for t in phase1.texts),
            num_generated_tokens=phase1.num_generated,
            num_truncated_reasoning=int((~phase1.found_future_start).sum()),
            model_id=self.model_id,
            backend=self.backend_name)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.double().cpu().numpy()


def _to_device(prompt: PromptInputs, device: torch.device, dtype: torch.dtype) -> PromptInputs:
    if device.type == "cpu" and dtype == torch.float32:
        return prompt
    return PromptInputs(input_ids=prompt.input_ids.to(device),
                        attention_mask=prompt.attention_mask.to(device),
                        pixel_values=prompt.pixel_values.to(device, dtype),
                        image_grid_thw=prompt.image_grid_thw.to(device))
