"""The recorder (alpamayo_ros.tools.record) in separate processes over DDS: with use_sim_time it
never writes a message before the clock is valid, so a bag never starts at time 0."""

from __future__ import annotations

import json
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosproc import RosProcess, next_domain_id, ros_env

from alpamayo_ros.tools.bag_io import iter_raw, make_typestore

HELPER = str(Path(__file__).with_name("clock_publisher.py"))
CLOCK_START_NS = 1000 * 10**9


def test_nothing_is_written_before_the_first_clock_message(tmp_path):
    env = ros_env(next_domain_id(), tmp_path / "roslog")
    out = tmp_path / "recorded"
    recorder = RosProcess(["-m", "alpamayo_ros.tools.record", "--out", str(out),
                           "/chatter:=std_msgs/msg/String", "--ros-args", "-p",
                           "use_sim_time:=true"], env, "record")
    publisher = None
    try:
        recorder.wait_for("^READY", 30.0)
        publisher = RosProcess([HELPER], env, "clock_publisher")
        publisher.wait_for("^EARLY_DONE", 60.0)
        recorder.wait_for("clock is not valid yet", 30.0)  # an early message was dropped
        publisher.send("go")
        publisher.wait_for("^DONE", 60.0)
        recorder.stop()
        recorded = json.loads(recorder.wait_for("^RECORDED (.*)$", 10.0).group(1))
        dropped = json.loads(recorder.wait_for("^DROPPED_BEFORE_CLOCK (.*)$", 10.0).group(1))
    finally:
        if publisher is not None:
            publisher.stop()
        recorder.stop()
    assert dropped["/chatter"] >= 1 and recorded["/chatter"] >= 1
    assert dropped["/chatter"] + recorded["/chatter"] == 25  # reliable: every message arrived
    messages = list(iter_raw(out))
    assert len(messages) == recorded["/chatter"]
    assert min(m.t_ns for m in messages) >= CLOCK_START_NS
    typestore = make_typestore()
    texts = [typestore.deserialize_cdr(m.data, "std_msgs/msg/String").data for m in messages]
    assert "late-19" in texts, texts
    with AnyReader([out]) as reader:
        assert reader.start_time >= CLOCK_START_NS
        assert reader.duration < 10 * 10**9  # seconds, not the 54 years of a time-0 start
