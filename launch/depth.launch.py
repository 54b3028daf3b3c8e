"""Start depth_node on one camera (and optionally a depth_image_proc point cloud).

    ros2 launch adu_depth depth.launch.py model:=/models/student.onnx \
        image:=/camera/image_rect camera_info:=/camera/camera_info namespace:=front

Topics: the node's relative `image`/`camera_info` are remapped to the launch arguments; its outputs
appear under the namespace (`/front/depth/image`, `/front/depth/camera_info`, ...). Parameters come
from `params_file` (config/depth_node.yaml); `model` and `backend`, when given, override it.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import ComposableNodeContainer, Node
from launch_ros.descriptions import ComposableNode
from launch_ros.substitutions import FindPackageShare

PACKAGE = "adu_depth"

ARGUMENTS = {
    "image": ("/camera/image_rect", "camera image topic (sensor_msgs/Image, any colour encoding)"),
    "camera_info": ("/camera/camera_info", "camera_info topic of that image"),
    "params_file": (None, "depth_node parameters (YAML, ros__parameters)"),
    "model": ("", "model file (.pt / .onnx / .engine); overrides model_path of params_file when set"),
    "backend": ("", "auto | tensorrt | onnxruntime | torch; overrides params_file when set"),
    "image_transport": (
        "",
        "raw | compressed (subscribes to <image>/compressed); overrides params_file when set",
    ),
    "namespace": ("", "namespace of the node and its depth/* outputs"),
    "use_sim_time": ("false", "use /clock (true for bag replays)"),
    "point_cloud": ("false", "also run depth_image_proc point_cloud_xyz → depth/points"),
}


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _setup(context: LaunchContext) -> list:
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    use_sim_time = _true(arg["use_sim_time"])
    overrides: dict[str, object] = {"use_sim_time": use_sim_time}
    if arg["model"]:
        overrides["model_path"] = arg["model"]
    if arg["backend"]:
        overrides["backend"] = arg["backend"]
    if arg["image_transport"]:
        overrides["image_transport"] = arg["image_transport"]
    actions: list = [
        Node(
            package=PACKAGE,
            executable="depth_node",
            name="depth_node",
            namespace=arg["namespace"],
            parameters=[arg["params_file"], overrides],
            remappings=[("image", arg["image"]), ("camera_info", arg["camera_info"])],
            output="screen",
            emulate_tty=True,
        )
    ]
    if _true(arg["point_cloud"]):
        # point_cloud_xyz pairs image_rect with camera_info by exact stamp: depth/image + depth/camera_info
        actions.append(
            ComposableNodeContainer(
                name="depth_point_cloud_container",
                namespace=arg["namespace"],
                package="rclcpp_components",
                executable="component_container",
                composable_node_descriptions=[
                    ComposableNode(
                        package="depth_image_proc",
                        plugin="depth_image_proc::PointCloudXyzNode",
                        name="point_cloud_xyz",
                        namespace=arg["namespace"],
                        remappings=[
                            ("image_rect", "depth/image"),
                            ("camera_info", "depth/camera_info"),
                            ("points", "depth/points"),
                        ],
                        parameters=[{"use_sim_time": use_sim_time}],
                    )
                ],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "depth_node.yaml"])
    declared = [
        DeclareLaunchArgument(
            name, default_value=default_params if default is None else default, description=doc
        )
        for name, (default, doc) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup)])
