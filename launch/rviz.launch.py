"""RViz with config/adu_depth.rviz: camera image, depth, uncertainty and a DepthCloud of depth/image.

    ros2 launch adu_depth rviz.launch.py namespace:=front

The displays use relative topics (depth/image, depth/colorized, ...) resolved in `namespace`, and
the camera image as remapped by the `image` argument. Fixed frame: the camera's optical frame.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "adu_depth"

ARGUMENTS = {
    "rviz_config": (None, "RViz configuration file"),
    "namespace": ("", "namespace of depth_node (its depth/* topics)"),
    "image": ("/camera/image_rect", "camera image topic shown next to the depth"),
    "fixed_frame": ("", "RViz fixed frame, e.g. the camera's optical frame; empty: the config's"),
    "use_sim_time": ("false", "use /clock (true for bag replays)"),
}


def _setup(context: LaunchContext) -> list:
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=arg["namespace"],
            arguments=["-d", arg["rviz_config"]] + (["-f", arg["fixed_frame"]] if arg["fixed_frame"] else []),
            parameters=[{"use_sim_time": arg["use_sim_time"].strip().lower() in ("true", "1", "yes", "on")}],
            remappings=[("image", arg["image"])],
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "adu_depth.rviz"])
    declared = [
        DeclareLaunchArgument(
            name, default_value=default_config if default is None else default, description=doc
        )
        for name, (default, doc) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup)])
