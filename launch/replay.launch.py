"""Replay a bag through the alpamayo node and watch it in RViz, all on the bag's clock.

    ros2 launch alpamayo replay.launch.py bag:=/path/to/drive model_dir:=/path/to/model
    ros2 launch alpamayo replay.launch.py bag:=drive model_dir:=m rate:=0.5 loop:=true rviz:=false

For real ROS 2 installs (needs rosbag2's `ros2 bag play` with the MCAP storage plugin and
launch_ros; rviz2 optional). It starts:
    - the node via alpamayo.launch.py with use_sim_time:=true; camera_transport:=auto (the
      default) reads the bag's metadata.yaml and subscribes to `<topic>/compressed` where the
      bag carries compressed images;
    - `ros2 bag play BAG --clock 100 --rate R [--loop]` after `delay` seconds (the node loads
      its model first; raise the delay for a large checkpoint);
    - rviz2 on sim time with config/alpamayo.rviz retargeted to this launch's namespace, remaps
      and camera transport (written to the launch's log folder). rviz:=auto (the default)
      starts it when rviz2 is installed; rviz:=true without rviz2 fails before anything starts.
The command lines come from alpamayo_ros/tools/launch_support.py (tested without launch).
Without a ROS install, use `alpamayo-replay BAG --clock` and `python -m alpamayo_ros` instead
(see alpamayo_ros/tools/demo.py, which does just that).
"""

import os
from pathlib import Path

from ament_index_python.packages import (
    PackageNotFoundError,
    get_package_prefix,
    get_package_share_directory,
)
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    TimerAction,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.logging import launch_config
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from alpamayo_ros.node.params import ros_default
from alpamayo_ros.tools import launch_support as ls
from alpamayo_ros.tools.rviz_layout import launch_topics, write_layout

PACKAGE = "alpamayo"
# Launch arguments handed through to alpamayo.launch.py unchanged.
PASSED = ("model_dir", "params_file", "namespace", "device", "backend", "odom", "plan",
          "trajectory", "history", "reasoning", "markers")
REMAPPED = {"odom": "/odom", "trajectory": "~/trajectory", "history": "~/history",
            "markers": "~/markers"}


def _installed(package):
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        return False
    return True


def _camera_transport(arg, params):
    if arg("camera_transport") != ls.TRANSPORT_AUTO:
        return ls.parse_transport(arg("camera_transport"))
    return ls.bag_camera_transport(ls.bag_topics(arg("bag")), params["camera_topics"])


def _rviz(arg, params, transport):
    topics = launch_topics(
        params["camera_topics"], transport, namespace=arg("namespace"),
        remaps={inside: arg(name) for name, inside in REMAPPED.items()},
        default_cameras=ros_default("camera_topics"))
    layout = write_layout(Path(arg("rviz_config")),
                          Path(launch_config.log_dir) / "alpamayo.rviz", topics)
    return Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", str(layout), "--ros-args", "-p", "use_sim_time:=true"])


def _actions(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory(PACKAGE)
    # Everything that can fail is decided before the first action starts.
    want_rviz = ls.rviz_wanted(arg("rviz"), _installed("rviz2"))
    params = {"camera_topics": ros_default("camera_topics"),
              **ls.node_parameters(arg("params_file"), ls.NODE_NAME, arg("namespace"))}
    transport = _camera_transport(arg, params)
    play = ExecuteProcess(cmd=ls.bag_play_argv(arg("bag"), float(arg("rate")),
                                               ls.parse_bool("loop", arg("loop"))),
                          output="screen")
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "alpamayo.launch.py")),
        launch_arguments={**{name: arg(name) for name in PASSED}, "use_sim_time": "true",
                          "camera_transport": ",".join(transport)}.items())
    actions = [node, TimerAction(period=float(arg("delay")), actions=[play])]
    if want_rviz:
        actions.append(_rviz(arg, params, transport))
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder to play (.mcap or .db3)"),
        DeclareLaunchArgument("model_dir", description="Checkpoint folder of the node"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "alpamayo.yaml"),
            description="Node parameters"),
        DeclareLaunchArgument("namespace", default_value="", description="Node namespace"),
        DeclareLaunchArgument("device", default_value="", description="If set, replaces device"),
        DeclareLaunchArgument("backend", default_value="",
                              description="If set, replaces backend"),
        DeclareLaunchArgument(
            "camera_transport", default_value=ls.TRANSPORT_AUTO,
            description="auto (from the bag's topics), raw, compressed, or one per camera"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback speed"),
        DeclareLaunchArgument("loop", default_value="false", description="Loop the bag"),
        DeclareLaunchArgument("delay", default_value="15.0",
                              description="Seconds to wait for the node before playing"),
        DeclareLaunchArgument("rviz", default_value="auto",
                              description="Start RViz: true, false, auto (if installed)"),
        DeclareLaunchArgument(
            "rviz_config", default_value=os.path.join(share, "config", "alpamayo.rviz"),
            description="RViz layout (its topics are retargeted to this launch)"),
    ]
    args += [DeclareLaunchArgument(name, default_value=topic,
                                   description=f"Remap of the node's {topic}")
             for name, topic in {**REMAPPED, "plan": "~/plan", "reasoning": "~/reasoning"}.items()]
    return LaunchDescription([*args, OpaqueFunction(function=_actions)])
