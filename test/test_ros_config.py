"""Static checks of the ROS files without ROS: parameter YAML ↔ params dataclasses, RViz topics ↔ the
node's outputs, launch files ↔ node topic names, docs/ROS.md ↔ parameters; plus importing the launch
files and building their descriptions where `launch`/`launch_ros` are installed (skipped otherwise)."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml

from adu_depth_core.runtime.outputs import OUTPUTS
from adu_depth_ros.live_eval import GT_TOPIC, METRICS_TOPIC, PREDICTION_TOPIC
from adu_depth_ros.params import EvalParams, NodeParams, defaults, params_from_values
from adu_depth_ros.pipeline import CAMERA_INFO_TOPIC, IMAGE_TOPIC

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = ("depth.launch.py", "bag_replay.launch.py", "rviz.launch.py")
POINT_CLOUD_TOPIC = "depth/points"  # depth_image_proc point_cloud_xyz in depth.launch.py


def ros_parameters(path: Path, node: str) -> dict:
    data = yaml.safe_load(path.read_text())
    assert list(data) == [f"/**/{node}"], f"{path.name}: one section for /**/{node} (any namespace)"
    section = data[f"/**/{node}"]
    assert list(section) == ["ros__parameters"]
    return section["ros__parameters"]


@pytest.mark.parametrize(
    ("filename", "node", "cls"),
    [("depth_node.yaml", "depth_node", NodeParams), ("eval_node.yaml", "eval_node", EvalParams)],
)
def test_parameter_files_match_the_params_dataclasses_exactly(filename, node, cls):
    values = ros_parameters(ROOT / "config" / filename, node)
    fields = [f.name for f in dataclasses.fields(cls)]
    assert sorted(values) == sorted(fields), "unknown or missing parameters"
    assert list(values) == fields, "keep the file in declaration order (it doubles as documentation)"
    params = params_from_values(cls, values)  # types and allowed values
    assert dataclasses.asdict(params) == defaults(cls), "the shipped file documents the defaults"


def test_topics_are_relative_and_unique():
    topics = [IMAGE_TOPIC, CAMERA_INFO_TOPIC, *(spec.topic for spec in OUTPUTS.values())]
    assert all(not t.startswith("/") and not t.startswith("~") for t in topics)
    assert len(set(topics)) == len(topics)
    assert OUTPUTS["depth"].topic == PREDICTION_TOPIC == "depth/image"
    # depth_image_proc / RViz DepthCloud find the camera_info next to the depth image
    assert OUTPUTS["camera_info"].topic == OUTPUTS["depth"].topic.rsplit("/", 1)[0] + "/camera_info"
    assert {GT_TOPIC, METRICS_TOPIC}.isdisjoint(topics[:2])


def rviz_topics(config: dict) -> dict[str, list[str]]:
    """{display class: [topics]} of an RViz config."""
    found: dict[str, list[str]] = {}
    for display in config["Visualization Manager"]["Displays"]:
        topics = []
        if isinstance(display.get("Topic"), dict):
            topics.append(display["Topic"]["Value"])
        for key in ("Depth Map Topic", "Color Image Topic"):
            if key in display:
                topics.append(display[key])
        found.setdefault(display["Class"], []).extend(topics)
    return found


def test_rviz_config_shows_image_depth_uncertainty_and_a_depth_cloud():
    config = yaml.safe_load((ROOT / "config" / "adu_depth.rviz").read_text())
    topics = rviz_topics(config)
    published = {spec.topic for name, spec in OUTPUTS.items() if spec.encoding is not None}
    allowed = published | {IMAGE_TOPIC, POINT_CLOUD_TOPIC}
    every = [t for ts in topics.values() for t in ts]
    assert every and set(every) <= allowed, f"topics the node does not publish: {set(every) - allowed}"
    images = set(topics["rviz_default_plugins/Image"])
    assert {IMAGE_TOPIC, OUTPUTS["depth_colorized"].topic, OUTPUTS["uncertainty_colorized"].topic} <= images
    depth_cloud = next(
        d
        for d in config["Visualization Manager"]["Displays"]
        if d["Class"] == "rviz_default_plugins/DepthCloud"
    )
    assert depth_cloud["Depth Map Topic"] == OUTPUTS["depth"].topic and depth_cloud["Enabled"]
    assert depth_cloud["Color Image Topic"] == IMAGE_TOPIC
    assert topics["rviz_default_plugins/PointCloud2"] == [POINT_CLOUD_TOPIC]
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"]


# --- launch files ---------------------------------------------------------------------------------


def launch_source(name: str) -> ast.Module:
    return ast.parse((ROOT / "launch" / name).read_text(), filename=name)


def declared_arguments(tree: ast.Module) -> list[str]:
    """Keys of the module-level ARGUMENTS dict (each becomes a DeclareLaunchArgument)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ARGUMENTS" for t in node.targets):
            assert isinstance(node.value, ast.Dict)
            return [ast.literal_eval(k) for k in node.value.keys if k is not None]
    raise AssertionError("no ARGUMENTS dict")


def remapped_names(tree: ast.Module) -> set[str]:
    """First elements of the (from, to) pairs in every `remappings=[...]` keyword."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "remappings" and isinstance(node.value, ast.List):
            for pair in node.value.elts:
                if isinstance(pair, ast.Tuple) and isinstance(pair.elts[0], ast.Constant):
                    names.add(pair.elts[0].value)
    return names


def test_launch_files_declare_the_documented_arguments_and_remap_the_nodes_topics():
    trees = {name: launch_source(name) for name in LAUNCH_FILES}
    for tree in trees.values():
        assert any(
            isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body
        )
    depth_args = declared_arguments(trees["depth.launch.py"])
    required = ("image", "camera_info", "params_file", "model", "namespace", "use_sim_time", "backend")
    assert set(required) <= set(depth_args)
    assert {"bag", "model", "gt", "rviz", "rate", "image", "camera_info"} <= set(
        declared_arguments(trees["bag_replay.launch.py"])
    )
    assert {IMAGE_TOPIC, CAMERA_INFO_TOPIC} <= remapped_names(trees["depth.launch.py"])
    assert GT_TOPIC in remapped_names(trees["bag_replay.launch.py"])
    docs = (ROOT / "docs" / "ROS.md").read_text()
    for name in LAUNCH_FILES:
        for arg in declared_arguments(trees[name]):
            assert f"`{arg}`" in docs, f"{name} argument {arg!r} is not in docs/ROS.md"


def load_launch_module(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / "launch" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_files_build_their_descriptions(name):
    # ROS's `launch`, not this repository's launch/ folder (a namespace package when cwd is on sys.path)
    pytest.importorskip("launch.actions")
    pytest.importorskip("launch_ros.actions")
    from launch.actions import DeclareLaunchArgument

    description = load_launch_module(name).generate_launch_description()
    declared = [e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert declared == declared_arguments(launch_source(name))


# --- docs -----------------------------------------------------------------------------------------


def _yaml_default(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.mark.parametrize("cls", [NodeParams, EvalParams])
def test_docs_table_lists_every_parameter_with_its_default(cls):
    docs = (ROOT / "docs" / "ROS.md").read_text()
    for name, default in defaults(cls).items():
        row = f"| `{name}` |"
        rows = [
            line
            for line in docs.splitlines()
            if line.startswith(row) and f"`{_yaml_default(default)}`" in line
        ]
        assert rows, f"docs/ROS.md has no row for {cls.__name__}.{name} with default {default!r}"


def test_docs_list_every_topic():
    docs = (ROOT / "docs" / "ROS.md").read_text()
    for topic in [
        IMAGE_TOPIC,
        CAMERA_INFO_TOPIC,
        GT_TOPIC,
        METRICS_TOPIC,
        *(s.topic for s in OUTPUTS.values()),
    ]:
        assert f"| `{topic}` |" in docs, topic
