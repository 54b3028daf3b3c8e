"""CI runs the README's test command verbatim, then the ROS part, which says so when it skips."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim_then_the_ros_part():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .venv && .*pytest -q)\n```", readme)
    assert len(commands) == 1, "the README's test command"
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[0] in lines
    assert lines.index(commands[0]) < lines.index(".ci/ros_tests.sh")


def test_without_ros_the_ros_part_says_it_skipped_and_succeeds(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROS_", "AMENT_", "COLCON_"))}
    env["ADU_DEPTH_ROS_ROOT"] = str(tmp_path / "no_ros")
    run = subprocess.run(
        ["bash", str(ROOT / ".ci" / "ros_tests.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        f"ROS 2 not found (ROS_DISTRO unset, no {tmp_path / 'no_ros'}/setup.bash): the ROS tests were skipped"
    )


def test_a_sourced_ros_without_colcon_is_an_error_not_a_skip(tmp_path):
    fake = tmp_path / "ros"
    fake.mkdir()
    (fake / "setup.bash").write_text("export ROS_DISTRO=jazzy\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROS_", "AMENT_", "COLCON_"))}
    env.update(ADU_DEPTH_ROS_ROOT=str(fake), ADU_DEPTH_VENV=str(tmp_path / "venv"), PATH="/usr/bin:/bin")
    run = subprocess.run(
        ["bash", str(ROOT / ".ci" / "ros_tests.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert run.returncode == 1
    assert f"ROS 2 jazzy is sourced but colcon is not installed in {tmp_path / 'venv'}" in run.stderr


def test_a_setup_bash_that_sets_no_distro_is_named_and_skipped(tmp_path):
    fake = tmp_path / "ros"
    fake.mkdir()
    (fake / "setup.bash").write_text("export AMENT_PREFIX_PATH=/nowhere\n")  # a build without ros_environment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROS_", "AMENT_", "COLCON_"))}
    env["ADU_DEPTH_ROS_ROOT"] = str(fake)
    run = subprocess.run(
        ["bash", str(ROOT / ".ci" / "ros_tests.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        f"{fake}/setup.bash set no ROS_DISTRO (no ros_environment package): the ROS tests were skipped"
    )
