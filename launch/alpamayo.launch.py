"""Launch the alpamayo lifecycle node with the shipped parameters and Fast DDS profile.

    ros2 launch alpamayo alpamayo.launch.py model_dir:=/path/to/checkpoint
    ros2 launch alpamayo alpamayo.launch.py params_file:=my.yaml use_sim_time:=true \
        odom:=/localization/kinematic_state plan:=/planning/alpamayo/plan

model_dir, device and backend, when given, replace the values of the params file: they are
written into a copy of it, because a node-specific section of a params file beats any other
override (ROS 2 parameter precedence). The topic arguments are ROS remappings. The node
configures and activates itself when its `autostart` parameter is true (the default); with
autostart false, drive it through its lifecycle services.
"""

import os
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

PACKAGE = "alpamayo"
EXECUTABLE = "alpamayo_node"
NODE_NAME = "alpamayo"
# Launch arguments that replace node parameters of the same name when not empty.
PARAM_OVERRIDES = ("model_dir", "device", "backend")
# Launch argument -> (topic name inside the node, description); each becomes a remapping.
REMAPS = {
    "odom": ("/odom", "Odometry input (nav_msgs/Odometry)"),
    "plan": ("~/plan", "DrivingPlan output"),
    "trajectory": ("~/trajectory", "Selected trajectory output (nav_msgs/Path)"),
    "reasoning": ("~/reasoning", "Reasoning text output (std_msgs/String)"),
    "markers": ("~/markers", "Visualization output (visualization_msgs/MarkerArray)"),
}


def _params_file_with_overrides(context):
    """Path of the params file, or of a copy with the non-empty PARAM_OVERRIDES applied."""
    path = LaunchConfiguration("params_file").perform(context)
    overrides = {}
    for name in PARAM_OVERRIDES:
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    if not overrides:
        return path
    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f) or {}
    section = content.setdefault(NODE_NAME, {}).setdefault("ros__parameters", {})
    section.update(overrides)
    with tempfile.NamedTemporaryFile(
            "w", prefix="alpamayo_params_", suffix=".yaml", delete=False) as out:
        yaml.safe_dump(content, out)
    return out.name


def _node(context):
    remappings = [(topic, LaunchConfiguration(arg).perform(context))
                  for arg, (topic, _) in REMAPS.items()]
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    return [LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[_params_file_with_overrides(context), {"use_sim_time": use_sim_time}],
        remappings=remappings,
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "alpamayo.yaml"),
            description="Node parameters (section 'alpamayo')"),
        DeclareLaunchArgument(
            "fastdds_profile", default_value=os.path.join(share, "config", "fastdds.xml"),
            description="Fast DDS XML profile (large images between processes)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag replay, simulation)"),
        DeclareLaunchArgument("namespace", default_value="", description="Node namespace"),
        DeclareLaunchArgument("log_level", default_value="info", description="Log level"),
    ]
    args += [DeclareLaunchArgument(name, default_value="",
                                   description=f"If set, replaces parameter {name}")
             for name in PARAM_OVERRIDES]
    args += [DeclareLaunchArgument(arg, default_value=topic, description=text)
             for arg, (topic, text) in REMAPS.items()]
    fastdds = SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile"))
    return LaunchDescription([*args, fastdds, OpaqueFunction(function=_node)])
