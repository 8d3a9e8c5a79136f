"""The alpamayo lifecycle node: plumbing between ROS topics and `alpamayo_core.Planner`.

Lifecycle: configure validates the parameters, loads and warms up the planner and creates the
buffers, publishers and subscriptions (callbacks only append raw messages to bounded buffers);
activate starts the planning timer; deactivate stops it; cleanup releases the model. The
`autostart` parameter runs configure + activate at start-up.

Planning runs on one worker thread, never on the executor: a timer tick hands the work over, and
a tick that finds the previous plan still running is skipped and counted (never queued). Each
plan is for t0 = newest reference-camera stamp, stamped t0 in `odom_frame`; it and its status
(OK, DEGRADED or INVALID) come from `plan_step.PlanStep`, the function the offline evaluation
shares. INVALID plans carry no trajectories, and only `~/plan` (with the reason) is published
for them. Teardown cancels the plan in flight (its next reasoning token or flow step stops it).
A plan that finishes once shutdown has begun (teardown, or a signal: rclpy shuts its context
down before `destroy_node` runs) publishes nothing; an exception while building or publishing
the messages is logged with its traceback (rate-limited) and recorded as an INVALID plan, and
never ends the worker or the process.
/diagnostics runs on the wall clock, so a stopped node clock (use_sim_time without /clock) or a
stalled planner is still reported.

Topics (node-relative): ~/plan (alpamayo/DrivingPlan), ~/trajectory (nav_msgs/Path, selected
sample), ~/history (nav_msgs/Path, the ego history the model was given), ~/reasoning
(std_msgs/String), ~/markers (MarkerArray), /diagnostics (DiagnosticArray). Alpamayo 1.5:
~/route in (std_msgs/String) and the ~/ask service (`navigation_node`).

The planner comes from `planner_loader(params)` (default: `pipeline.load_planner`, the model
folder in `model_dir`, or the embedded demo model when it is empty); pass another loader to
wrap or replace it (tests inject a failing one).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from alpamayo.msg import DrivingPlan
from alpamayo_core.inference.plan import PlanInputs
from alpamayo_ros.node import messages, plan_step
from alpamayo_ros.node import params as node_params
from alpamayo_ros.node.camera_buffer import CameraBuffer
from alpamayo_ros.node.ego_history import EgoHistoryBuffer
from alpamayo_ros.node.navigation import RouteState
from alpamayo_ros.node.navigation_node import NavigationMixin
from alpamayo_ros.node.node_status import (
    ClockWatch,
    NodeStatus,
    ReasonLog,
    diagnostics_statuses,
)
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.pipeline import load_planner, make_buffers, with_node_settings
from alpamayo_ros.node.plan_step import PlanStep

if TYPE_CHECKING:
    from alpamayo_core.inference.planner import Planner

_SUCCESS, _FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
#: How long teardown waits for a cancelled plan (it stops at its next token or flow step).
_CANCEL_WAIT_S = 1.5
_SAMPLING_PARAMS = ("temperature", "top_p", "max_generation_tokens", "num_traj_samples",
                    "num_flow_steps", "noise_temperature", "forward_only")
_OUTPUTS = {"plan": DrivingPlan, "trajectory": Path, "history": Path, "reasoning": String,
            "markers": MarkerArray}


class AlpamayoNode(NavigationMixin, LifecycleNode):
    """Managed node running the Alpamayo planner on camera images and odometry."""

    def __init__(self, node_name: str = "alpamayo", *,
                 planner_loader: Callable[[NodeParams], Planner] = load_planner,
                 **kwargs) -> None:
        """`planner_loader` builds the planner in configure; `kwargs` go to `LifecycleNode`.

        The state is set before `LifecycleNode.__init__`: a parameter override that fails its
        declaration raises there, and rclpy's shutdown then destroys the half-built node."""
        self._planner_loader = planner_loader
        self._params: NodeParams | None = None
        self._planner = None
        self._cameras: CameraBuffer | None = None
        self._odometry: EgoHistoryBuffer | None = None
        self._camera_subs: dict[str, object] = {}
        self._camera_reliability: dict[str, ReliabilityPolicy] = {}
        self._entities: list[tuple[str, object]] = []  # (kind, entity) destroyed in cleanup
        self._pubs: dict[str, object] = {}
        self._plan_timer = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alpamayo_plan")
        self._future: concurrent.futures.Future | None = None
        self._cancel = threading.Event()  # set to stop the plan in flight (teardown)
        self._plan_step: PlanStep | None = None
        self._reason_log = ReasonLog()
        self._publish_error_log = ReasonLog(min_interval_s=10.0)
        self._clock_watch = ClockWatch()
        self.status = NodeStatus()
        self._init_navigation()
        super().__init__(node_name, **kwargs)
        self.context.on_shutdown(self._cancel.set)  # rclpy.shutdown(); a signal is seen below
        node_params.declare_parameters(self)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    # -- parameters ---------------------------------------------------------------------------
    def _validate_parameters(self, changes) -> SetParametersResult:
        ok, reason = node_params.validate_changes(self, changes)
        return SetParametersResult(successful=ok, reason=reason)

    def _apply_parameters(self, changes) -> None:
        """Live parameters take effect now (read-only ones cannot change at all)."""
        if self._params is None:
            return
        self._params = NodeParams.from_node(self)
        names = {p.name for p in changes}
        if names & set(_SAMPLING_PARAMS):
            self._planner = with_node_settings(self._planner, self._params)
            self._plan_step.planner = self._planner
        self._plan_step.params = self._params
        if self._plan_timer is not None and "plan_rate_hz" in names:
            self._start_plan_timer()

    # -- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = NodeParams.from_node(self)
        except ValueError as err:
            self.get_logger().error(f"configure failed: {err}")
            return _FAILURE
        try:
            self._planner = self._load_planner(params)
            self._check_planner(params)
        except Exception as err:
            source = params.model_dir or "the embedded demo model"
            self.get_logger().error(f"configure failed: cannot load the model from "
                                    f"{source!r}: {type(err).__name__}: {err}")
            self._planner = None
            return _FAILURE
        self._params = params
        try:
            self._create_buffers(params)
            self._create_io(params)
        except Exception as err:
            self.get_logger().error(f"configure failed: {type(err).__name__}: {err}")
            self._release()
            return _FAILURE
        self.get_logger().info(
            f"configured: model {self._planner.model_id} backend {self._planner.backend_name} "
            f"decode {params.decode_mode} device {params.device}")
        selection = self._planner.backend_selection
        if selection is not None:
            log = self.get_logger().warning if selection.fell_back else self.get_logger().info
            log("expert backend trials: " + selection.diagnostic_values()["trials"])
        return _SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cancel.clear()
        self._start_plan_timer()
        self.status.mark_active(True, self._params.plan_rate_hz)
        self.get_logger().info(f"active: planning at {self._params.plan_rate_hz} Hz")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_plan_timer()
        self.status.mark_active(False)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return _SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return _SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error("error during a transition; releasing everything")
        self._release()
        return _SUCCESS

    def cancel_plan(self) -> None:
        """Stop the plan in flight at its next token or flow step; it publishes nothing
        (shutdown: call it first). The next activation clears it."""
        self._cancel.set()

    def destroy_node(self) -> None:
        self.cancel_plan()  # first: a long plan stops at its next token or flow step
        self._release()
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().destroy_node()

    # -- configure helpers --------------------------------------------------------------------
    def _load_planner(self, params: NodeParams):
        start = time.perf_counter()
        planner = self._planner_loader(params)
        self.get_logger().info(f"model loaded in {time.perf_counter() - start:.1f} s")
        if params.warmup_on_configure:
            start = time.perf_counter()
            cfg = planner.cfg
            ids = tuple(i for i, _ in params.cameras_by_id) if cfg.is_1_5 else None
            planner.plan(_blank_inputs(len(params.camera_names), cfg.images.frame_offsets_s,
                                       cfg.history_tokenizer.num_steps, ids), seed=0)
            self.get_logger().info(f"warm-up plan took {time.perf_counter() - start:.1f} s")
        return planner

    def _check_planner(self, params: NodeParams) -> None:
        ids = tuple(i for i, _ in params.cameras_by_id)
        if self._planner.cfg.is_1_5:
            return  # any 1-7 cameras (camera_ids validated with the parameters)
        if ids != self._planner.default_camera_ids:
            raise ValueError(f"an Alpamayo-R1 model takes camera ids "
                             f"{list(self._planner.default_camera_ids)}, camera_ids has "
                             f"{list(params.camera_ids)}")
        want = len(self._planner.cfg.images.cameras)
        if len(params.camera_names) != want:
            raise ValueError(f"the model takes {want} cameras, camera_names has "
                             f"{len(params.camera_names)}")

    def _create_buffers(self, params: NodeParams) -> None:
        self._cameras, self._odometry = make_buffers(params, self._planner.cfg)
        self._route = RouteState()  # a new configure starts without a route
        self._plan_step = PlanStep(self._planner, self._cameras, self._odometry, params,
                                   route=self._route)

    def _create_io(self, params: NodeParams) -> None:
        for name, msg_type in _OUTPUTS.items():
            self._pubs[name] = self.create_lifecycle_publisher(msg_type, f"~/{name}", 10)
        self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._entities.append(("publisher", self._pubs["diagnostics"]))
        odom_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._entities.append(("subscription", self.create_subscription(
            Odometry, params.odom_topic, self._on_odometry, odom_qos)))
        for index, name in enumerate(params.camera_names):
            self._subscribe_camera(index, name, self._wanted_reliability(index))
        self._entities.append(("timer", self.create_timer(
            1.0 / params.diagnostics_rate_hz, self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME))))
        if params.camera_qos == "auto":
            self._entities.append(("timer", self.create_timer(1.0, self._recheck_camera_qos)))
        self._create_navigation_io(params)

    # -- subscriptions (cheap: append to buffers, never decode or block) -----------------------
    def _on_odometry(self, msg: Odometry) -> None:
        self._odometry.add_odometry(msg)

    def _subscribe_camera(self, index: int, name: str, reliability: ReliabilityPolicy) -> None:
        params = self._params
        old = self._camera_subs.pop(name, None)
        if old is not None:
            self.destroy_subscription(old)
        compressed = params.transport_of(index) == "compressed"
        self._camera_subs[name] = self.create_subscription(
            CompressedImage if compressed else Image, params.subscribed_topic(index),
            lambda msg, camera=name: self._cameras.add(camera, msg),
            QoSProfile(depth=5, reliability=reliability))
        self._camera_reliability[name] = reliability

    def _wanted_reliability(self, index: int) -> ReliabilityPolicy:
        """best_effort / reliable as set; auto = RELIABLE only if every publisher is."""
        choice = self._params.camera_qos
        if choice != "auto":
            return ReliabilityPolicy[choice.upper()]
        infos = self.get_publishers_info_by_topic(self._params.subscribed_topic(index))
        if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
            return ReliabilityPolicy.RELIABLE
        return ReliabilityPolicy.BEST_EFFORT

    def _recheck_camera_qos(self) -> None:
        """camera_qos auto: re-subscribe a camera whose publishers' reliability changed."""
        for index, name in enumerate(self._params.camera_names):
            wanted = self._wanted_reliability(index)
            if wanted != self._camera_reliability.get(name):
                self.get_logger().info(f"camera {name}: subscribing {wanted.name} to match its "
                                       f"publishers")
                self._subscribe_camera(index, name, wanted)

    # -- planning -----------------------------------------------------------------------------
    def _start_plan_timer(self) -> None:
        self._stop_plan_timer()
        self._plan_timer = self.create_timer(1.0 / self._params.plan_rate_hz, self._on_plan_tick)

    def _stop_plan_timer(self) -> None:
        if self._plan_timer is not None:
            self.destroy_timer(self._plan_timer)
            self._plan_timer = None

    def _on_plan_tick(self) -> None:
        if self._future is not None and not self._future.done():
            self.status.skipped_ticks += 1
            return
        self._future = self._pool.submit(self._plan_once)

    def _plan_once(self) -> plan_step.PlanOutcome:
        """One planning attempt (worker thread); every failure is an INVALID plan. Never
        raises: a failure to publish it is logged and recorded (`_on_publish_error`)."""
        outcome = self._plan_step.run(self.get_clock().now().nanoseconds, self._cancel)
        if self._shutting_down():
            return outcome  # the publishers are going away
        try:
            self._publish_outcome(outcome)
        except Exception as err:
            self._on_publish_error(outcome, err)
            return outcome
        self._publish_error_log.should_log("")  # the same error, if it returns, is logged again
        latency_ms = None if outcome.plan is None else outcome.plan.timings_ms["node_total"]
        self.status.record(outcome.level, outcome.reason, latency_ms, outcome.t0_ns)
        if self._reason_log.should_log(outcome.reason):
            self.get_logger().warning(f"plan status: {outcome.reason}")
        return outcome

    def _publish_outcome(self, outcome: plan_step.PlanOutcome) -> None:
        planner = self._planner
        for name, msg in plan_step.outcome_messages(
                outcome, self._params, model_id=planner.model_id,
                backend=planner.backend_name).items():
            self._pubs[name].publish(msg)

    def _shutting_down(self) -> bool:
        """Teardown began (the cancel flag), or rclpy's signal handler shut the context down,
        which it does before `destroy_node` can set the flag. Reads the rcl context directly:
        `Context.ok()` takes the lock that `rclpy.shutdown()` holds while it destroys nodes."""
        if not self._cancel.is_set():
            handle = self.context.handle
            if handle is not None and handle.ok():
                return False
            self._cancel.set()
        return True

    def _on_publish_error(self, outcome: plan_step.PlanOutcome, err: Exception) -> None:
        """Publishing into a shut-down context is the shutdown itself (debug); anything else is
        a bug: logged with its traceback (once per kind and 10 s) and an INVALID plan."""
        cause = f"{type(err).__name__}: {err}"
        if self._shutting_down():
            self.get_logger().debug(f"plan not published, shutting down ({cause})")
            return
        reason = f"publishing the plan failed: {cause}"
        self.status.record(messages.STATUS_INVALID, reason, None, outcome.t0_ns)
        if self._publish_error_log.should_log(reason):
            trace = "".join(traceback.format_exception(err)).rstrip()
            self.get_logger().error(f"{reason}\n{trace}")

    # -- diagnostics --------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        """Wall-clock timer: runs even when the node clock (sim time) stands still."""
        now_ns = self.get_clock().now().nanoseconds
        clock_advancing = self._clock_watch.advancing(now_ns)
        statuses = diagnostics_statuses(
            self.status, self._params, self._cameras, self._odometry, now_ns,
            model_id=self._planner.model_id, backend=self._planner.backend_name,
            camera_reliability={k: v.name for k, v in self._camera_reliability.items()},
            backend_selection=self._planner.backend_selection,
            clock_advancing=clock_advancing, decode=self._planner.decode_mode)
        statuses.append(self._navigation_diagnostic(now_ns))
        stamp_ns = now_ns if clock_advancing else time.time_ns()
        self._pubs["diagnostics"].publish(messages.diagnostic_array(stamp_ns, statuses))

    # -- teardown -----------------------------------------------------------------------------
    def _release(self) -> None:
        """Stop planning, destroy what configure created, drop the model (idempotent)."""
        self._stop_plan_timer()
        if self._future is not None:
            self._cancel.set()
            future, self._future = self._future, None
            self._report_last_plan(future)
        for sub in self._camera_subs.values():
            self.destroy_subscription(sub)
        self._camera_subs.clear()
        for kind, entity in self._entities:
            getattr(self, f"destroy_{kind}")(entity)
        self._entities.clear()
        for name in _OUTPUTS:
            if name in self._pubs:
                self.destroy_lifecycle_publisher(self._pubs[name])
        self._pubs.clear()
        self._planner = self._cameras = self._odometry = self._params = None
        self._plan_step = None
        self.status = NodeStatus()

    def _report_last_plan(self, future: concurrent.futures.Future) -> None:
        """Wait (bounded) for the cancelled plan and log how it ended; never raises: a worker's
        exception is logged here once, with its traceback, instead of ending the process."""
        done, _ = concurrent.futures.wait([future], timeout=_CANCEL_WAIT_S)
        if not done:
            self.get_logger().warning(
                f"the plan in flight did not stop within {_CANCEL_WAIT_S} s of its cancel")
        elif future.cancelled():
            return
        elif (err := future.exception()) is not None:
            trace = "".join(traceback.format_exception(err)).rstrip()
            self.get_logger().error(f"the plan worker failed: {type(err).__name__}: {err}\n"
                                    f"{trace}")
        elif future.result().cancelled:
            self.get_logger().info("the plan in flight was cancelled")


def _blank_inputs(num_cameras: int, offsets_s: tuple[float, ...], num_poses: int,
                  camera_ids: tuple[int, ...] | None = None) -> PlanInputs:
    """Grey 1080p frames at standstill: a realistic-size warm-up request."""
    images = np.full((num_cameras, len(offsets_s), 1080, 1920, 3), 128, dtype=np.uint8)
    return PlanInputs(images_rgb=images, history_xyz_m=np.zeros((num_poses, 3)),
                      history_rot=np.tile(np.eye(3), (num_poses, 1, 1)), camera_ids=camera_ids)
