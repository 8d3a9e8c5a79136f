"""Launch the alpamayo lifecycle node with the shipped parameters and Fast DDS profile.

    ros2 launch alpamayo alpamayo.launch.py model_dir:=/path/to/checkpoint
    ros2 launch alpamayo alpamayo.launch.py params_file:=my.yaml use_sim_time:=true \
        namespace:=veh1 camera_transport:=compressed \
        odom:=/localization/kinematic_state plan:=/planning/alpamayo/plan

model_dir, device, backend and camera_transport, when given, replace the values of the params
file: they follow the file on the node's command line (`--params-file FILE -p name:=value`, see
alpamayo_ros/tools/launch_support.py), which works because the file is keyed `/**` and so
applies under any namespace or node name. No temporary files are written. The topic arguments
are ROS remappings. The node configures and activates itself when its `autostart` parameter is
true (the default); with autostart false, drive it through its lifecycle services.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from alpamayo_ros.tools.launch_support import launch_overrides, node_ros_args, parse_bool

PACKAGE = "alpamayo"
EXECUTABLE = "alpamayo_node"
NODE_NAME = "alpamayo"
# Launch arguments that replace node parameters of the same name when not empty.
PARAM_OVERRIDES = ("model_dir", "device", "backend", "camera_transport")
# Launch argument -> (topic name inside the node, description); each becomes a remapping.
REMAPS = {
    "odom": ("/odom", "Odometry input (nav_msgs/Odometry)"),
    "plan": ("~/plan", "DrivingPlan output"),
    "trajectory": ("~/trajectory", "Selected trajectory output (nav_msgs/Path)"),
    "history": ("~/history", "Ego history the model saw (nav_msgs/Path)"),
    "reasoning": ("~/reasoning", "Reasoning text output (std_msgs/String)"),
    "markers": ("~/markers", "Visualization output (visualization_msgs/MarkerArray)"),
}


def _node(context):
    value = {name: LaunchConfiguration(name).perform(context)
             for name in (*PARAM_OVERRIDES, *REMAPS, "params_file", "use_sim_time",
                          "log_level", "namespace")}
    overrides = launch_overrides({name: value[name] for name in PARAM_OVERRIDES},
                                 parse_bool("use_sim_time", value["use_sim_time"]))
    return [LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=value["namespace"],
        output="screen",
        remappings=[(topic, value[arg]) for arg, (topic, _) in REMAPS.items()],
        arguments=node_ros_args(value["params_file"], overrides, value["log_level"]),
    )]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "alpamayo.yaml"),
            description="Node parameters (section '/**' or the node's full name)"),
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
