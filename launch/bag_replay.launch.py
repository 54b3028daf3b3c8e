"""Replay a rosbag2 through depth_node, score it live against ground truth, and watch it in RViz.

    ros2 launch adu_depth bag_replay.launch.py bag:=/data/rig_bag model:=/models/student.onnx \
        gt:=/camera/left/depth_gt fixed_frame:=camera_left_optical_frame

Runs `ros2 bag play --clock` (after `start_delay` s, so the model is loaded before the first frame),
depth_node and — when `gt` names a ground-truth depth image topic — eval_node, all on sim time, plus
RViz unless rviz:=false. With shutdown_at_end:=true (default) everything stops when the bag ends and
eval_node logs its final metrics. For offline scoring without a ROS graph use `adu-depth bag-eval`.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "adu_depth"

ARGUMENTS = {
    "bag": ("", "rosbag2 folder (or file) to play; required"),
    "model": ("", "model file (.pt / .onnx / .engine); overrides model_path of params_file when set"),
    "image": ("/camera/left/image_raw", "camera image topic in the bag (default: the synthetic rig bag's)"),
    "camera_info": ("/camera/left/camera_info", "camera_info topic in the bag"),
    "gt": ("", "ground-truth depth image topic in the bag (32FC1 m or 16UC1 mm); empty: no eval_node"),
    "namespace": ("", "namespace of the nodes and their depth/* outputs"),
    "params_file": (None, "depth_node parameters"),
    "eval_params_file": (None, "eval_node parameters"),
    "backend": ("", "auto | tensorrt | onnxruntime | torch; overrides params_file when set"),
    "rate": ("1.0", "playback rate"),
    "start_delay": ("5.0", "seconds to wait before playing (model loading)"),
    "rviz": ("true", "start RViz"),
    "fixed_frame": ("", "RViz fixed frame (the camera's optical frame); empty: config/adu_depth.rviz's"),
    "point_cloud": ("false", "also run depth_image_proc point_cloud_xyz → depth/points"),
    "shutdown_at_end": ("true", "stop every node when the bag has been played"),
}


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _setup(context: LaunchContext) -> list:
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    if not arg["bag"]:
        raise RuntimeError("bag_replay.launch.py: the argument bag:=<rosbag2 folder> is required")
    launch_dir = PathJoinSubstitution([FindPackageShare(PACKAGE), "launch"])
    actions: list = [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([launch_dir, "depth.launch.py"])),
            launch_arguments={
                "image": arg["image"],
                "camera_info": arg["camera_info"],
                "params_file": arg["params_file"],
                "model": arg["model"],
                "backend": arg["backend"],
                "namespace": arg["namespace"],
                "point_cloud": arg["point_cloud"],
                "use_sim_time": "true",
            }.items(),
        )
    ]
    if arg["gt"]:
        actions.append(
            Node(
                package=PACKAGE,
                executable="eval_node",
                name="eval_node",
                namespace=arg["namespace"],
                parameters=[arg["eval_params_file"], {"use_sim_time": True}],
                remappings=[("gt/depth/image", arg["gt"])],
                output="screen",
                emulate_tty=True,
            )
        )
    if _true(arg["rviz"]):
        actions.append(
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(PathJoinSubstitution([launch_dir, "rviz.launch.py"])),
                launch_arguments={
                    "namespace": arg["namespace"],
                    "image": arg["image"],
                    "fixed_frame": arg["fixed_frame"],
                    "use_sim_time": "true",
                }.items(),
            )
        )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", arg["bag"], "--clock", "100", "--rate", arg["rate"]],
        name="bag_play",
        output="screen",
    )
    actions.append(TimerAction(period=float(arg["start_delay"]), actions=[play]))
    if _true(arg["shutdown_at_end"]):
        actions.append(
            RegisterEventHandler(
                OnProcessExit(target_action=play, on_exit=[EmitEvent(event=Shutdown(reason="bag played"))])
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    defaults = {
        "params_file": PathJoinSubstitution([share, "config", "depth_node.yaml"]),
        "eval_params_file": PathJoinSubstitution([share, "config", "eval_node.yaml"]),
    }
    declared = [
        DeclareLaunchArgument(
            name, default_value=defaults[name] if default is None else default, description=doc
        )
        for name, (default, doc) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup)])
