"""Dependencies that keep working beside a ROS 2 Jazzy install (issue 16).

cv_bridge is built against OpenCV 4 and returns OpenCV 4 type codes; launch_testing's pytest plugin
loads in pytest 8 only. setup.py bounds both; these tests check the bounds, the installed versions and
the APIs the bounds protect, and that a stub `rclpy` (rclpy-intellisense, the dev extra) makes the
ROS launch tests skip instead of failing.

An environment installed before the bounds (opencv-python 5, pytest 9) fails here only where ROS is
present, since only there do the bounds matter; elsewhere it skips and says how to reinstall.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ROS_PRESENT = bool(os.environ.get("ROS_DISTRO")) or Path("/opt/ros/jazzy/setup.bash").is_file()


def setup_keywords() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"
    )
    return {k.arg: k.value for k in call.keywords if k.arg}


def requirements() -> dict[str, Requirement]:
    kw = setup_keywords()
    reqs = [Requirement(r) for r in ast.literal_eval(kw["install_requires"])]
    for extra in ast.literal_eval(kw["extras_require"]).values():
        reqs += [Requirement(r) for r in extra]
    return {r.name: r for r in reqs}


def test_setup_bounds_opencv_and_pytest_below_the_versions_ros_cannot_use():
    reqs = requirements()
    opencv, pytest_req = reqs["opencv-python"], reqs["pytest"]
    assert Version("4.10.0.84") in opencv.specifier and Version("5.0.0.93") not in opencv.specifier
    assert Version("8.4.2") in pytest_req.specifier and Version("9.0.0") not in pytest_req.specifier
    headless = reqs.get("opencv-python-headless")
    assert headless is None or Version("5.0") not in headless.specifier
    assert "tests_require" not in setup_keywords()  # unknown to setuptools >= 72 (a warning on every build)


def _installed(dist: str, requirement: Requirement) -> None:
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed as a distribution")
    if Version(version) not in requirement.specifier and not ROS_PRESENT:
        pytest.skip(
            f"installed {dist} {version} is outside setup.py's {requirement.specifier} (the environment "
            "predates the bound; it matters beside ROS 2 only): reinstall with pip install -e '.[dev]'"
        )
    assert Version(version) in requirement.specifier, f"{dist} {version} breaks ROS 2: {requirement}"


def test_installed_opencv_has_the_type_codes_cv_bridge_returns():
    import cv2

    opencv = requirements()["opencv-python"]
    dists = [d for d in ("opencv-python", "opencv-python-headless") if _has_dist(d)]
    dists.sort(key=lambda d: not metadata.version(d).startswith(cv2.__version__))  # the one cv2 comes from
    if dists:
        _installed(dists[0], opencv)
    elif not ROS_PRESENT and int(cv2.__version__.split(".")[0]) >= 5:
        pytest.skip(f"cv2 {cv2.__version__} outside the bound, no ROS here")
    assert int(cv2.__version__.split(".")[0]) == 4
    # cv_bridge's C++ encoding_to_cvtype2 returns CV_MAKETYPE(depth, channels) of OpenCV 4, and its Python
    # side looks the number up in a table built from these constants: KeyError: 16 under OpenCV 5
    codes = {"CV_8UC1": 0, "CV_8UC3": 16, "CV_8UC4": 24, "CV_16UC1": 2, "CV_32FC1": 5}
    assert {name: getattr(cv2, name) for name in codes} == codes


def _has_dist(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_installed_pytest_is_one_launch_testing_loads_in():
    _installed("pytest", requirements()["pytest"])
    assert pytest.version_tuple[0] == 8


def test_a_stub_rclpy_makes_the_launch_tests_skip(monkeypatch):
    """rclpy-intellisense installs an `rclpy` whose import fails without ROS (no rcl_interfaces): the launch
    test module must still import and mark its classes skipped, never error at collection."""
    import builtins

    real_import = builtins.__import__

    def stub_rclpy(name, *args, **kwargs):
        if name == "rclpy" or name.startswith(("rclpy.", "launch", "cv_bridge", "sensor_msgs")):
            raise ModuleNotFoundError("No module named 'rcl_interfaces'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", stub_rclpy)
    for name in ("test_depth_node_launch", "test_depth_node_graph"):
        spec = importlib.util.spec_from_file_location(f"_{name}", ROOT / "test" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert "rcl_interfaces" in module.ROS_MISSING
        classes = [v for v in vars(module).values() if isinstance(v, type) and v.__name__.startswith("Test")]
        assert classes and all(getattr(c, "__unittest_skip__", False) for c in classes), name
        assert not hasattr(module, "generate_test_description")
