"""Replay a bag through the alpamayo node and watch it in RViz, all on the bag's clock.

    ros2 launch alpamayo replay.launch.py bag:=/path/to/drive model_dir:=/path/to/model
    ros2 launch alpamayo replay.launch.py bag:=drive model_dir:=m rate:=0.5 loop:=true rviz:=false

For real ROS 2 installs (needs rosbag2's `ros2 bag play`, rviz2 and launch_ros). It starts:
    - the node via alpamayo.launch.py with use_sim_time:=true,
    - `ros2 bag play BAG --clock` (rate, loop) after `delay` seconds (the node loads its model
      first; raise the delay for a large checkpoint),
    - rviz2 with config/alpamayo.rviz, also on sim time.
Without a ROS install, use `alpamayo-replay BAG --clock` and `python -m alpamayo_ros` instead
(see alpamayo_ros/tools/demo.py, which does just that).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

PACKAGE = "alpamayo"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder to play (.mcap or .db3)"),
        DeclareLaunchArgument("model_dir", description="Checkpoint folder of the node"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "alpamayo.yaml"),
            description="Node parameters"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback speed"),
        DeclareLaunchArgument("loop", default_value="false", description="Loop the bag"),
        DeclareLaunchArgument("delay", default_value="15.0",
                              description="Seconds to wait for the node before playing"),
        DeclareLaunchArgument("rviz", default_value="true", description="Start RViz"),
        DeclareLaunchArgument(
            "rviz_config", default_value=os.path.join(share, "config", "alpamayo.rviz"),
            description="RViz layout"),
    ]
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "alpamayo.launch.py")),
        launch_arguments={
            "model_dir": LaunchConfiguration("model_dir"),
            "params_file": LaunchConfiguration("params_file"),
            "use_sim_time": "true",
        }.items())
    loop_flag = PythonExpression(["'--loop' if '", LaunchConfiguration("loop"),
                                  "'.lower() == 'true' else ''"])
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock", "--rate",
             LaunchConfiguration("rate"), loop_flag],
        output="screen")
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": True}],
        condition=IfCondition(LaunchConfiguration("rviz")))
    delayed_play = TimerAction(period=LaunchConfiguration("delay"), actions=[play])
    return LaunchDescription([*args, node, rviz, delayed_play])
