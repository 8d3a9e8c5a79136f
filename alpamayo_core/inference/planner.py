"""`Planner`: camera frames + ego history in, a `Plan` (K trajectories, texts, timings) out.

One plan reads top to bottom:

    validate inputs -> preprocess (images, history tokens, prompt)
    -> phase 1: VLM prefill + sampled reasoning until one token after <|traj_future_start|>
    -> expert prefix (per-layer K/V, positions, additive mask)
    -> [1.5 guidance: unguided prefix from the prompt without its route span, `guidance`]
    -> phase 2: flow matching over the expert backend (noise at t=0 -> actions at t=1)
    -> unicycle integration -> selection -> `Plan`

Glossary: C cameras, F frames per camera, N history poses, B = K trajectory rows
(num_traj_sets x num_traj_samples), T waypoints, P cached prefix tokens.

Alpamayo 1.5 (`cfg.variant`): camera ids and a route text per plan (`PlanInputs`), guidance and
noise temperature (`GuidanceConfig`), and questions (`ask`); an R1 model refuses them.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor

from alpamayo_core.backends import BackendSelection, ExpertBackend, select
from alpamayo_core.inference.frame_cache import (
    FrameCache,
    FrameEncodingCache,
    ImageFeatures,
    encode_frames,
)
from alpamayo_core.inference.guidance import (
    GuidanceConfig,
    GuidedVelocity,
    UnguidedContext,
    replay_unguided,
    stack_prefixes,
)
from alpamayo_core.inference.plan import Plan, PlanInputs
from alpamayo_core.inference.question import Answer, answer_question
from alpamayo_core.inference.reasoning import (
    DecodeOptions,
    Phase1Result,
    SamplingConfig,
    check_cancel,
    generate_reasoning,
)
from alpamayo_core.inference.reasoning import decode_mode as reasoning_decode_mode
from alpamayo_core.inference.selection import select_medoid
from alpamayo_core.inference.timing import device_clock
from alpamayo_core.inputs.cameras import MAX_CAMERAS, camera_ids_for_names
from alpamayo_core.inputs.images import ImageInputs, model_size_images
from alpamayo_core.inputs.prompt import PromptInputs, PromptLayout, build_prompt, without_route
from alpamayo_core.inputs.tokens import HistoryDeltaTokenizer
from alpamayo_core.io.model_io import LoadedModel, load_model
from alpamayo_core.model import flow_matching
from alpamayo_core.model.config import FlowConfig

LOG = logging.getLogger(__name__)


class Planner:
    """Runs Alpamayo plans on one device. Not thread-safe: one `plan`/`ask` call at a time."""

    def __init__(self, loaded: LoadedModel, sampling: SamplingConfig | None = None,
                 flow: FlowConfig | None = None, backend: str | ExpertBackend = "auto",
                 backend_options: dict[str, object] | None = None,
                 backend_fallback: bool = True,
                 backend_selection: BackendSelection | None = None,
                 decode: DecodeOptions | None = None,
                 frame_cache: FrameEncodingCache | None = None,
                 guidance: GuidanceConfig | None = None, forward_only: bool = False):
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
        plan's worth, C x F images; C = 7 for a 1.5 model) for inputs that carry `frame_keys`.
        `guidance`: 1.5 noise temperature and guidance weight (refused by an R1 model).
        `forward_only`: integrate the actions with the speed clamped at >= 0
        (`UnicycleActionSpace.action_to_traj`); off = the reference's integration.
        """
        self.loaded = loaded
        self.cfg = loaded.cfg
        self.sampling = sampling or SamplingConfig()
        self.flow = flow or self.cfg.flow
        self.decode = decode or DecodeOptions()
        cameras = MAX_CAMERAS if self.cfg.is_1_5 else len(self.cfg.images.cameras)
        self.frame_cache = frame_cache or FrameEncodingCache(
            cameras * len(self.cfg.images.frame_offsets_s))
        # Keyed frames resized for recent plans (uint8 at the model's size, on the device).
        self.resized_frames: FrameCache[torch.Tensor] = FrameCache(self.frame_cache.max_frames)
        self.guidance = guidance or GuidanceConfig()
        self.forward_only = forward_only
        if self.guidance != GuidanceConfig() and not self.cfg.is_1_5:
            raise ValueError(f"guidance: {self.cfg.name} is an Alpamayo-R1 model; guidance and "
                             "noise temperature are Alpamayo 1.5 features (load a 1.5 "
                             "checkpoint or leave them at their defaults)")
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

    @property
    def decode_mode(self) -> str:
        """How the reasoning decode loop runs: eager, compile, cuda_graph, or
        "eager (compiling failed: ...)" (`reasoning.decode_mode`)."""
        return reasoning_decode_mode(self._model.vlm, self.decode)

    @property
    def default_camera_ids(self) -> tuple[int, ...]:
        """Camera ids of the checkpoint's camera list (the four-camera rig: 0, 1, 2, 6)."""
        return camera_ids_for_names(self.cfg.images.cameras)

    def with_settings(self, sampling: SamplingConfig | None = None,
                      flow: FlowConfig | None = None,
                      guidance: GuidanceConfig | None = None,
                      decode: DecodeOptions | None = None,
                      forward_only: bool | None = None) -> Planner:
        """A planner sharing this one's weights, expert backend and frame caches with other
        sampling/flow/guidance/decode/integration settings (None: this planner's)."""
        planner = Planner(
            self.loaded, sampling or self.sampling, flow or self.flow, self._expert,
            backend_selection=self.backend_selection, decode=decode or self.decode,
            frame_cache=self.frame_cache, guidance=guidance or self.guidance,
            forward_only=self.forward_only if forward_only is None else forward_only)
        planner.resized_frames = self.resized_frames
        return planner

    def forget_frames(self) -> None:
        """Empty the frame caches (before frames whose keys may repeat with other pixels, e.g.
        the stamps of another recording)."""
        self.frame_cache.clear()
        self.resized_frames.clear()

    def _ms_since(self, start: float) -> float:
        return (device_clock(self.device) - start) * 1e3

    # -- inputs -------------------------------------------------------------------------------

    def layout(self, camera_ids: tuple[int, ...] | None = None, route_text: str | None = None,
               question: str | None = None) -> PromptLayout:
        """The prompt layout for these 1.5 inputs; ValueError naming the field when the model
        (R1) or the values do not allow them."""
        if not self.cfg.is_1_5:
            for name, value in (("route_text", route_text), ("question", question)):
                if value is not None:
                    raise ValueError(f"{name}: {self.cfg.name} is an Alpamayo-R1 model, trained "
                                     "without navigation text or questions; load an Alpamayo "
                                     "1.5 checkpoint")
            if camera_ids is not None and tuple(camera_ids) != self.default_camera_ids:
                raise ValueError(f"camera_ids: an Alpamayo-R1 model takes its four cameras "
                                 f"{list(self.default_camera_ids)} only, got {list(camera_ids)}")
            return PromptLayout()
        ids = self.default_camera_ids if camera_ids is None else tuple(camera_ids)
        return PromptLayout(camera_ids=ids, route_text=route_text, question=question)

    def _validate_images(self, images: np.ndarray, layout: PromptLayout) -> None:
        cams = self.cfg.images
        n_cams = len(layout.camera_ids or cams.cameras)
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 5:
            raise ValueError("images_rgb: expected a uint8 array (C, F, H, W, 3), got "
                             f"{getattr(images, 'dtype', type(images))} "
                             f"{getattr(images, 'shape', '')}")
        if layout.camera_ids is not None:  # 1.5: any frames per camera
            if images.shape[0] != n_cams or images.shape[1] < 1 or images.shape[-1] != 3:
                raise ValueError(f"images_rgb: expected ({n_cams} cameras for ids "
                                 f"{list(layout.camera_ids)}, F >= 1 frames, H, W, 3), got "
                                 f"{images.shape}")
            return
        expected = (n_cams, len(cams.frame_offsets_s))
        if images.shape[:2] != expected or images.shape[-1] != 3:
            raise ValueError(f"images_rgb: expected ({expected[0]} cameras, {expected[1]} frames"
                             f", H, W, 3) in {cams.cameras} order, got {images.shape}")

    def validate(self, inputs: PlanInputs) -> None:
        """Raise ValueError naming the field for inputs this model cannot plan from."""
        layout = self.layout(inputs.camera_ids, inputs.route_text)
        self._validate_images(inputs.images_rgb, layout)
        frames = int(np.prod(np.shape(inputs.images_rgb)[:2]))
        if inputs.frame_keys is not None and len(inputs.frame_keys) != frames:
            raise ValueError(f"frame_keys: expected {frames} keys (C x F), got "
                             f"{len(inputs.frame_keys)}")
        if self.guidance.enabled and inputs.route_text is None:
            raise ValueError("route_text: guidance (weight "
                             f"{self.guidance.weight}) needs a route text; give one or set "
                             "the guidance weight to 0")
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

    def _images(self, images_rgb: np.ndarray,
                keys: tuple[Hashable, ...] | None = None) -> ImageInputs:
        """(C, F, H, W, 3) uint8 frames -> `model_size_images` on the device. With `keys`
        (one per frame), a frame resized for a recent plan is not resized again (at 10 Hz and
        offsets -0.3..0 s, 12 of 16 frames; ~1.2 ms each at 1080p on one CPU thread)."""
        frames = torch.from_numpy(np.ascontiguousarray(images_rgb))  # (C, F, H, W, 3)
        flat = frames.flatten(0, 1).permute(0, 3, 1, 2)  # (N, 3, H, W) channels-last view
        if keys is None:
            return model_size_images(flat, self.cfg.images, self.cfg.vision, device=self.device)
        size, resized = tuple(flat.shape[-2:]), []
        for key, frame in zip(keys, flat.split(1), strict=True):
            image = self.resized_frames.get((key, size))
            if image is None:  # a copy: at the model's size it would be a view of the input
                image = model_size_images(frame, self.cfg.images, self.cfg.vision,
                                          device=self.device).pixel_values.clone(
                    memory_format=torch.channels_last)  # (1, 3, h, w)
                self.resized_frames.put((key, size), image)
            resized.append(image)
        # Already at the model's size: this only attaches the grids.
        return model_size_images(torch.cat(resized), self.cfg.images, self.cfg.vision)

    def preprocess(self, inputs: PlanInputs) -> PromptInputs:
        """Images -> uint8 images at the model's size (`model_size_images`: the vision tower
        normalises and embeds them), history -> 48 tokens, fused into the chat prompt."""
        xyz = torch.as_tensor(np.asarray(inputs.history_xyz_m), dtype=torch.float32)
        history_ids = self._history_tokenizer.encode(xyz)  # (48,)
        prompt = build_prompt(self.loaded.tokenizer, self.loaded.token_ids,
                              self._images(inputs.images_rgb, inputs.frame_keys), history_ids,
                              num_history_tokens=self.cfg.history_tokenizer.num_tokens,
                              layout=self.layout(inputs.camera_ids, inputs.route_text))
        return _to_device(prompt, self.device)

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
            noise: (B, T, 2) flow noise at t=0, overriding the seeded draw (used as given:
                the noise temperature scales only the seeded draw).
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
        unguided = None
        if self.guidance.enabled:
            mark = device_clock(self.device)
            check_cancel(cancel, "unguided prefill")
            unguided = replay_unguided(self._model.vlm,
                                       without_route(prompt, self.loaded.token_ids), phase1,
                                       features)
            timings["unguided_prefill"] = self._ms_since(mark)
        mark = device_clock(self.device)
        actions = self._flow(phase1, generator, noise, unguided, cancel)  # (B, T, 2) normalised
        timings["flow"] = self._ms_since(mark)
        mark = time.perf_counter()
        plan = self._assemble(inputs, phase1, actions)
        timings["trajectory"] = self._ms_since(mark)
        timings["total"] = self._ms_since(start)
        return dataclasses.replace(plan, timings_ms=timings, route_text=inputs.route_text or "",
                                   guidance_weight=self.guidance.weight)

    def _prefix(self, ctx: Phase1Result | UnguidedContext):
        return self._model.expert.build_prefix(
            list(zip(ctx.keys, ctx.values, strict=True)),
            first_position=ctx.future_start_position + 1, n_action=self.cfg.n_waypoints,
            valid_len=ctx.future_start_index + 1)

    def _encode(self, inputs: PlanInputs, prompt: PromptInputs) -> ImageFeatures:
        """Vision features; frames with `frame_keys` seen in recent plans come from the cache."""
        keys = inputs.frame_keys
        if keys is not None:
            grids = [tuple(g) for g in prompt.image_grid_thw.tolist()]
            keys = [(key, grid) for key, grid in zip(keys, grids, strict=True)]
        return encode_frames(self._model.vlm.model.visual, prompt.pixel_values,
                             prompt.image_grid_thw, keys, self.frame_cache if keys else None)

    def _flow(self, phase1: Phase1Result, generator: torch.Generator,
              noise: torch.Tensor | None, unguided: UnguidedContext | None,
              cancel: threading.Event | None) -> torch.Tensor:
        """(B, T, 2) normalised actions; with `unguided`, the CFG field over both prefixes
        stacked on the batch. `cancel` is checked before every step (unguided, inside the
        backend's own `sample`, e.g. ONNX Runtime's io-binding Euler loop)."""
        rows, n_act = phase1.sequences.shape[0], self.cfg.n_waypoints
        if noise is None:
            noise = flow_matching.make_noise(rows, n_act, generator=generator,
                                             device=self.device)
            noise = noise * self.guidance.noise_temperature
        elif tuple(noise.shape) != (rows, n_act, 2):
            raise ValueError(f"noise: expected ({rows}, {n_act}, 2), got {tuple(noise.shape)}")
        noise = noise.to(self.device, torch.float32)
        if unguided is None:
            self._expert.bind(self._prefix(phase1))
            return self._expert.sample(noise, self.flow,
                                       lambda: check_cancel(cancel, "flow matching"))
        self._expert.bind(stack_prefixes(self._prefix(phase1), self._prefix(unguided)))
        field = GuidedVelocity(self._expert, self.guidance.weight)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            check_cancel(cancel, "flow matching")
            return field(x, t)

        return flow_matching.sample(velocity, noise, self.flow)

    @torch.inference_mode()
    def ask(self, images_rgb: np.ndarray, question: str,
            camera_ids: tuple[int, ...] | None = None, seed: int | None = None,
            t0_ns: int = 0, logits_processor: LogitsProcessor | None = None,
            cancel: threading.Event | None = None) -> Answer:
        """Alpamayo 1.5 question answering on camera frames (C, F, H, W, 3) uint8.

        Uses this planner's temperature, top-p, greedy, `max_new_tokens` and decode options,
        one row; `logits_processor` and `cancel` as in `plan`.
        """
        layout = self.layout(camera_ids, None, question)
        self._validate_images(images_rgb, layout)
        start = time.perf_counter()
        prompt = _to_device(build_prompt(self.loaded.tokenizer, self.loaded.token_ids,
                                         self._images(images_rgb), None,
                                         layout=layout),
                            self.device)
        preprocess_ms = self._ms_since(start)
        check_cancel(cancel, "preprocessing")
        generator = torch.Generator(self.device)
        generator.manual_seed(seed if seed is not None else secrets.randbits(63))
        sampling = dataclasses.replace(self.sampling, num_traj_samples=1, num_traj_sets=1)
        answer = answer_question(self._model.vlm, prompt, self.loaded.token_ids, sampling,
                                 self.loaded.tokenizer, generator, logits_processor,
                                 decode=self.decode, cancel=cancel)
        timings = {"preprocess": preprocess_ms, **answer.timings_ms,
                   "total": self._ms_since(start)}
        return dataclasses.replace(answer, t0_ns=int(t0_ns), model_id=self.model_id,
                                   timings_ms=timings)

    def _assemble(self, inputs: PlanInputs, phase1: Phase1Result,
                  actions: torch.Tensor) -> Plan:
        rows = actions.shape[0]
        xyz = torch.as_tensor(np.asarray(inputs.history_xyz_m), dtype=torch.float32,
                              device=self.device).expand(rows, -1, -1)
        rot = torch.as_tensor(np.asarray(inputs.history_rot), dtype=torch.float32,
                              device=self.device).expand(rows, -1, -1, -1)
        traj = self._model.action_space.action_to_traj(actions.float(), xyz, rot,
                                                       forward_only=self.forward_only)
        xyz_m = traj.xyz.double().cpu().numpy()  # (B, T, 3)
        dt_s = self.cfg.action_space.dt_s
        missing = ~phase1.found_future_start  # (K,)
        generated = phase1.sequences[:, phase1.prompt_length:]  # (K, N)
        closed = (generated == self.loaded.token_ids.im_end).any(dim=1)  # (K,)
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
            num_truncated_reasoning=int((missing & ~closed).sum()),
            num_ended_without_future_start=int((missing & closed).sum()),
            model_id=self.model_id,
            backend=self.backend_name)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.double().cpu().numpy()


def _to_device(prompt: PromptInputs, device: torch.device) -> PromptInputs:
    """The prompt's token ids on `device` (its pixels are normalised there by `_images`)."""
    if prompt.input_ids.device == device:
        return prompt
    return dataclasses.replace(prompt, input_ids=prompt.input_ids.to(device),
                               attention_mask=prompt.attention_mask.to(device))
