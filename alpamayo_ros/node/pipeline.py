"""What the node's parameters mean for the core: buffers, planner settings, planner loading.

One place for the node and the offline evaluation (`tools.evaluate`), so that replaying a bag
offline buffers, syncs and samples exactly as the live node does. No ROS node here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from alpamayo_core.model.config import ModelConfig
from alpamayo_ros.node.camera_buffer import CameraBuffer, CameraBufferConfig
from alpamayo_ros.node.ego_history import EgoHistoryBuffer, EgoHistoryConfig
from alpamayo_ros.node.params import NodeParams

if TYPE_CHECKING:
    from alpamayo_core.inference.planner import Planner

#: Frames kept beyond the oldest frame a plan uses (s), so a late plan still finds its frames.
_WINDOW_MARGIN_S = 0.5
#: Odometry extrapolation to t0 that is silent (beyond it, up to history_max_age_s, DEGRADED).
_SILENT_EXTRAPOLATION_S = 0.05


def make_buffers(params: NodeParams, cfg: ModelConfig) -> tuple[CameraBuffer, EgoHistoryBuffer]:
    """Camera and odometry buffers for the model's frame offsets and history sampling; the
    cameras are ordered by `camera_ids` (the order of the model's images)."""
    offsets = tuple(cfg.images.frame_offsets_s)
    cameras = CameraBuffer(CameraBufferConfig(
        cameras=tuple(name for _, name in params.cameras_by_id),
        reference_camera=params.reference_camera,
        offsets_s=offsets, tolerance_s=params.sync_tolerance_s,
        max_reference_age_s=params.max_image_age_s,
        window_s=-offsets[0] + 2.0 * params.sync_tolerance_s + _WINDOW_MARGIN_S))
    odometry = EgoHistoryBuffer(EgoHistoryConfig(
        num_poses=cfg.history_tokenizer.num_steps, dt_s=cfg.action_space.dt_s,
        max_gap_s=params.history_max_gap_s, max_age_s=params.history_max_age_s,
        max_extrapolation_s=min(_SILENT_EXTRAPOLATION_S, params.history_max_age_s),
        frame_id=params.odom_frame, quat_norm_tolerance=params.odom_quat_norm_tolerance))
    return cameras, odometry


def with_node_settings(planner: Planner, params: NodeParams) -> Planner:
    """The planner with the parameters' sampling, flow and integration settings (shares the
    weights).

    temperature 0 means greedy decoding.
    """
    from alpamayo_core.inference.reasoning import SamplingConfig

    sampling = SamplingConfig(
        temperature=params.temperature if params.temperature > 0 else 1.0,
        greedy=params.temperature == 0, top_p=params.top_p,
        max_new_tokens=params.max_generation_tokens, num_traj_samples=params.num_traj_samples)
    flow = planner.cfg.flow
    if params.num_flow_steps > 0:
        flow = dataclasses.replace(flow, num_steps=params.num_flow_steps)
    guidance = None  # R1: none; 1.5: the noise temperature (the weight is set per plan)
    if planner.cfg.is_1_5:
        from alpamayo_core.inference.guidance import GuidanceConfig

        guidance = GuidanceConfig(noise_temperature=params.noise_temperature)
    return planner.with_settings(sampling=sampling, flow=flow, guidance=guidance,
                                 forward_only=params.forward_only)


def expert_backend_options(params: NodeParams) -> dict[str, object]:
    """The expert backends' options from the parameters (each backend takes its own: the
    TensorRT engine's precision and optimization profile, which name the engine to load)."""
    return {"precision": params.tensorrt_precision, "max_batch": params.tensorrt_max_batch,
            "max_prefix": params.tensorrt_max_prefix}


def load_planner(params: NodeParams) -> Planner:
    """`Planner` for params.model_path (model_dir or the embedded demo model) on params.device
    with params.backend and settings."""
    from alpamayo_core.inference.planner import Planner
    from alpamayo_core.inference.reasoning import DecodeOptions

    decode = DecodeOptions(compile=params.decode_mode == "compile",
                           cuda_graph=params.decode_mode == "cuda_graph")
    planner = Planner.from_pretrained(params.model_path, device=params.device,
                                      backend=params.backend,
                                      backend_fallback=params.backend_fallback,
                                      backend_options=expert_backend_options(params),
                                      decode=decode)
    return with_node_settings(planner, params)
