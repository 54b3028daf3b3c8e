#!/usr/bin/env bash
# The ROS part of CI (called by .ci/run after the README's test command, with .venv built).
# Runs when a ROS 2 is sourced (ROS_DISTRO set) or installed at $ADU_DEPTH_ROS_ROOT (/opt/ros/jazzy):
# colcon build of this package into a temporary folder, then the ROS tests through pytest (launch_testing's
# plugin runs the launch tests). Otherwise it says that the ROS tests were skipped, and succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."
ros_root="${ADU_DEPTH_ROS_ROOT:-/opt/ros/jazzy}"
if [ -z "${ROS_DISTRO:-}" ] && [ -f "$ros_root/setup.bash" ]; then
    set +u; source "$ros_root/setup.bash"; set -u
fi
if [ -z "${ROS_DISTRO:-}" ] && [ -f "$ros_root/setup.bash" ]; then
    # a source build without the ros_environment package; export ROS_DISTRO to run the tests against it
    echo "$ros_root/setup.bash set no ROS_DISTRO (no ros_environment package): the ROS tests were skipped"
    exit 0
fi
if [ -z "${ROS_DISTRO:-}" ]; then
    echo "ROS 2 not found (ROS_DISTRO unset, no $ros_root/setup.bash): the ROS tests were skipped"
    exit 0
fi
venv="${ADU_DEPTH_VENV:-$PWD/.venv}"
# colcon writes the nodes' entry points for the python it runs under: it must be the venv's (torch,
# onnxruntime, opencv-python<5), so colcon is run from the venv, not from wherever else it is installed
if [ ! -x "$venv/bin/colcon" ]; then
    echo "ROS 2 $ROS_DISTRO is sourced but colcon is not installed in $venv: run" \
        "$venv/bin/pip install colcon-common-extensions (the nodes get the python colcon runs under)" >&2
    exit 1
fi
echo "ROS 2 $ROS_DISTRO found: colcon build and the ROS tests"
ws="$(mktemp -d)"
trap 'rm -rf "$ws"' EXIT
export PATH="$venv/bin:$PATH"
colcon --log-base "$ws/log" build --base-paths . --packages-select adu_depth \
    --build-base "$ws/build" --install-base "$ws/install"
set +u; source "$ws/install/setup.bash"; set -u
python -m pytest -q -p no:cacheprovider test/test_dependencies.py test/test_ros_config.py \
    test/test_depth_node_launch.py test/test_depth_node_graph.py
