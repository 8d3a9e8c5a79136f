"""The node's Alpamayo 1.5 interface, mixed into `AlpamayoNode`: `~/route` and `~/ask`.

* `~/route` (std_msgs/String, reliable, transient-local depth 1: a late joiner gets the last
  route): the navigation text of the following plans, until it is older than
  `route_max_age_s` (then dropped with a WARN on /diagnostics) or replaced ("" clears it).
* `~/ask` (alpamayo/srv/Ask): a question about the current camera frames. One model on one
  device: the question is queued on the planning worker (the single thread that runs plans),
  so it runs after the plan in progress and before the next one; it reads the same frames a
  plan at that moment would (the current camera buffer). Planning ticks keep their rule: a
  tick that finds a plan already waiting is skipped and counted. The service callback is a
  coroutine awaiting the worker in its own callback group, so the executor keeps serving the
  cameras, odometry and timers meanwhile (their callbacks wake it to resume the coroutine).
"""

from __future__ import annotations

import dataclasses

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from std_msgs.msg import String

from alpamayo.srv import Ask
from alpamayo_ros.node import messages
from alpamayo_ros.node.navigation import RouteState, navigation_status, plan_request
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.plan_assembly import InputsUnavailable

ROUTE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)


class NavigationMixin:
    """Route subscription, ask service, 1.5 plan requests and their diagnostic."""

    def _init_navigation(self) -> None:
        self._route = RouteState()

    def _create_navigation_io(self, params: NodeParams) -> None:
        """`~/route` feeds `self._route` (created with the plan step, which reads it)."""
        self._entities.append(("subscription", self.create_subscription(
            String, "~/route", self._on_route, ROUTE_QOS)))
        # Own callback group: while a question waits for the worker, the cameras, odometry and
        # timers (default group) keep running; a second question waits for the first.
        self._entities.append(("service", self.create_service(
            Ask, "~/ask", self._on_ask, callback_group=MutuallyExclusiveCallbackGroup())))

    def _on_route(self, msg: String) -> None:
        state = self._route.update(msg.data, self.get_clock().now().nanoseconds)
        log = self.get_logger().warning if state.startswith("rejected") else (
            self.get_logger().info)
        log(f"route {state}: {msg.data!r}")

    def _navigation_diagnostic(self, now_ns: int):
        params = self._params
        cfg = self._planner.cfg
        return navigation_status(self._route.view(now_ns, params.route_max_age_s), params,
                                 cfg.variant, cfg.is_1_5)

    async def _on_ask(self, request, response):
        """Queue the question on the planning worker and await its answer."""
        done = Future()
        self._pool.submit(self._answer_once, request.question, done)
        success, message, answer = await done
        response.success, response.message = success, message
        response.model_id = self._planner.model_id if self._planner is not None else ""
        if answer is not None:
            response.answer = answer.text
            response.t0 = messages.time_msg(answer.t0_ns)
        return response

    def _answer_once(self, question: str, done: Future) -> None:
        """Worker thread: answer on the current frames; every failure becomes a message."""
        try:
            done.set_result((True, "", self._answer(question)))
        except InputsUnavailable as err:
            done.set_result((False, f"no frames to answer on: {err.reason}", None))
        except ValueError as err:
            done.set_result((False, str(err), None))
        except Exception as err:  # the service must answer whatever the model does
            done.set_result((False, f"model: {type(err).__name__}: {err}", None))

    def _answer(self, question: str):
        params = self._params
        if params is None:
            raise ValueError("the node is not configured")
        assembled = self._plan_step.assemble(self.get_clock().now().nanoseconds)
        request = plan_request(assembled.inputs, self._route.view(0, 0.0), params,
                               self._planner.cfg.is_1_5)
        inputs = dataclasses.replace(request.inputs, route_text=None)
        return self._planner.ask(inputs.images_rgb, question, inputs.camera_ids,
                                 t0_ns=inputs.t0_ns, cancel=self._cancel)
