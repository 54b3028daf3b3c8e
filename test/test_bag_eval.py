"""`adu-depth bag-eval` end to end on synthetic rig bags (MCAP and sqlite3, depth-image and LiDAR GT).

The same rendered frames are written as a KITTI tree and as rig bags, so `adu-depth eval` and
`adu-depth bag-eval` must agree: the frames' depths are quantised to the KITTI PNG step (1/256 m) and K to
the precision of KITTI's calibration text, so both paths hand the estimator the same image and K and score
against the same ground truth. Untrained nano weights suffice for equality.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import torch

from adu_depth_core.checkpoint import save_checkpoint
from adu_depth_core.cli import main
from adu_depth_core.config import to_dict
from adu_depth_core.data import ros_messages as rm
from adu_depth_core.data import rosbag_io as rb
from adu_depth_core.data.kitti import write_kitti_tree
from adu_depth_core.data.synthetic import SyntheticRig, split_seed
from adu_depth_core.evaluate import SUMMARY_KEYS
from adu_depth_core.evaluation import UNCERTAINTY_KEYS, colorize_depth, colorize_uncertainty
from adu_depth_core.models import ModelConfig, build_student, build_teacher
from adu_depth_core.runtime import DepthEstimator

NET = (64, 224)
N_FRAMES = 4
FOCAL = 120.0
STORAGES = ("mcap", "sqlite3")
SCORED = (*SUMMARY_KEYS, *UNCERTAINTY_KEYS)
DEPTH_TOPICS = {
    "/depth/image": "32FC1",
    "/depth/uncertainty": "32FC1",
    "/depth/confident": "32FC1",
    "/depth/colorized": "bgr8",
    "/depth/uncertainty/colorized": "bgr8",
}


def _checkpoint(path, stage):
    torch.manual_seed(0)
    cfg = ModelConfig(preset="nano", input_size=NET)
    model = build_student(cfg) if stage == "student" else build_teacher(cfg)
    meta = {"focal_px": FOCAL}
    save_checkpoint(
        path, {"stage": stage, "model_config": to_dict(cfg), "model": model.state_dict(), "meta": meta}
    )
    return path


def _as_kitti_stores_it(frame):
    """The frame as a KITTI tree gives it back: depth in 1/256 m steps, K with KITTI's 7 digits."""

    def q(d):
        return (np.rint(d.astype(np.float64) * 256.0) / 256.0).astype(np.float32)

    K = np.array([float(f"{v:e}") for v in frame.K.ravel()]).reshape(3, 3)
    return dataclasses.replace(frame, depth=q(frame.depth), lidar_depth=q(frame.lidar_depth), K=K)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """Models, the frames, a KITTI tree and rig bags in both storages, all from the same seeds."""
    root = tmp_path_factory.mktemp("rig")
    renderer = SyntheticRig(size=NET)
    frames = [_as_kitti_stores_it(renderer.render(split_seed("test", i))) for i in range(N_FRAMES)]
    write_kitti_tree(root / "kitti", frames, "test", none_every=0)
    bags = {s: rb.write_rig_bag(root / f"rig_{s}", frames, storage=s) for s in STORAGES}
    models = {s: _checkpoint(root / f"{s}.pt", s) for s in ("student", "teacher")}
    return {"root": root, "frames": frames, "kitti": root / "kitti", "bags": bags, **models}


def _json(path):
    return json.loads(path.read_text())


def _bag_eval(model, bag, *extra):
    cmd = ["bag-eval", "--model", str(model), "--bag", str(bag), "--crop", "garg", "--device", "cpu"]
    return main([*cmd, *map(str, extra)])


@pytest.fixture(scope="module")
def kitti_eval(rig):
    """`adu-depth eval` of the student and the teacher on the KITTI tree."""
    out = {}
    for stage in ("student", "teacher"):
        path = rig["root"] / f"eval_{stage}.json"
        rc = main(["eval", "--model", str(rig[stage]), "--dataset", "kitti", "--data-path", str(rig["kitti"]),
                   "--crop", "garg", "--device", "cpu", "--json", str(path)])  # fmt: skip
        assert rc == 0
        out[stage] = _json(path)
    return out


def _tree_digest(path):
    files = [p for p in sorted(path.rglob("*")) if p.is_file()]
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("gt", ["depth", "lidar"])
def test_bag_eval_equals_eval_on_the_same_frames(rig, kitti_eval, tmp_path, storage, gt):
    out = tmp_path / "bag.json"
    source = ["--gt-topic", rb.DEPTH_GT] if gt == "depth" else ["--lidar-topic", rb.LIDAR_POINTS]
    assert _bag_eval(rig["student"], rig["bags"][storage], *source, "--json", out) == 0
    bag, ev = _json(out), kitti_eval["student"]
    assert bag["n_frames"] == N_FRAMES and bag["n_images"] == ev["n_images"] == N_FRAMES
    assert bag["n_skipped"] == ev["n_skipped"] == 0
    assert bag["meta"]["gt_source"] == ("depth_image" if gt == "depth" else "lidar")
    if gt == "depth":
        # /camera/left/depth_gt is the dense depth: the tree's dense GT, scored identically
        for key in SCORED:
            assert bag[key] == ev["dense_" + key], key
        per_bag = [{k: r[k] for k in SCORED} for r in bag["per_image"]]
        per_ev = [{k: r["dense_" + k] for k in SCORED} for r in ev["per_image"]]
        assert per_bag == per_ev
    else:
        # the LiDAR cloud re-projected with /tf_static and camera_info is the tree's sparse GT, up to the
        # float32 round trip of the points (~1e-7 m)
        for key in SCORED:
            assert bag[key] == pytest.approx(ev[key], rel=1e-6, abs=1e-9), key
        for key in ("d1", "d2", "d3"):  # same pixels, same threshold decisions
            assert bag[key] == ev[key]
    for p in (50, 90, 99):
        assert bag[f"latency_p{p}_ms"] > 0
    stamps = [r["stamp_ns"] for r in bag["per_image"]]
    assert stamps == [rb.DEFAULT_START_NS + i * 100_000_000 for i in range(N_FRAMES)]


def test_teacher_bag_eval_equals_eval_on_stereo_input(rig, kitti_eval, tmp_path, capsys):
    out = tmp_path / "t.json"
    bag = rig["bags"]["mcap"]
    rc = _bag_eval(
        rig["teacher"], bag, "--gt-topic", rb.DEPTH_GT, "--right-image-topic", rb.RIGHT_IMAGE, "--json", out
    )
    assert rc == 0
    data, ev = _json(out), kitti_eval["teacher"]
    assert data["n_images"] == N_FRAMES and not any(k in data for k in UNCERTAINTY_KEYS)
    for key in SUMMARY_KEYS:
        assert data[key] == ev["dense_" + key], key
    # without the right image the teacher cannot run
    assert _bag_eval(rig["teacher"], bag, "--gt-topic", rb.DEPTH_GT) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stereo teacher: pass --right-image-topic" in err[0]


@pytest.mark.parametrize("storage", STORAGES)
def test_out_bag_topics_encodings_stamps_and_values(rig, tmp_path, storage):
    bag = rig["bags"][storage]
    before = _tree_digest(bag)
    est = DepthEstimator.from_path(rig["student"], device="cpu")
    frames = rig["frames"]
    expected = [est.estimate(f.left, f.K) for f in frames]
    threshold = float(np.median(expected[0][1]))  # half of frame 0 is confident
    out = tmp_path / "out_bag"
    rc = _bag_eval(rig["student"], bag, "--lidar-topic", rb.LIDAR_POINTS, "--out-bag", out,
                   "--sigma-threshold", threshold, "--json", tmp_path / "m.json")  # fmt: skip
    assert rc == 0
    assert _tree_digest(bag) == before  # the input bag is untouched (no files added or changed)
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert [p.suffix for p in out.iterdir() if p.suffix in (".mcap", ".db3")] == [suffix]
    assert _json(tmp_path / "m.json")["out_bag"] == str(out)

    stamps = [rb.DEFAULT_START_NS + i * 100_000_000 for i in range(N_FRAMES)]
    with rb.open_bag(out) as reader:
        topics = rb.bag_topics(reader)
        assert topics == {
            **dict.fromkeys(DEPTH_TOPICS, rm.IMAGE),
            "/depth/camera_info": rm.CAMERA_INFO,
            rb.LEFT_IMAGE: rm.IMAGE,
            rb.LEFT_INFO: rm.CAMERA_INFO,
            rb.TF_STATIC: rm.TF_MESSAGE,
        }
        got = {t: list(rb.iter_topic(reader, t)) for t in topics}
    for topic, encoding in DEPTH_TOPICS.items():
        assert [s for s, _ in got[topic]] == stamps, topic
        for _, msg in got[topic]:
            assert msg.encoding == encoding and msg.header.frame_id == rb.LEFT_FRAME, topic
            assert (msg.height, msg.width) == NET
    for i, (depth, sigma) in enumerate(expected):
        out_depth = rm.msg_to_image(got["/depth/image"][i][1])
        out_sigma = rm.msg_to_image(got["/depth/uncertainty"][i][1])
        confident = rm.msg_to_image(got["/depth/confident"][i][1])
        np.testing.assert_array_equal(out_depth, depth)
        np.testing.assert_array_equal(out_sigma, sigma)
        np.testing.assert_array_equal(np.isnan(confident), sigma > np.float32(threshold))
        np.testing.assert_array_equal(confident[sigma <= threshold], depth[sigma <= threshold])
        np.testing.assert_array_equal(rm.msg_to_image(got["/depth/colorized"][i][1]), colorize_depth(depth))
        colored = rm.msg_to_image(got["/depth/uncertainty/colorized"][i][1])
        np.testing.assert_array_equal(colored, colorize_uncertainty(sigma))
        np.testing.assert_array_equal(rm.msg_to_image(got[rb.LEFT_IMAGE][i][1]), frames[i].left)
    assert 0.3 < np.isnan(rm.msg_to_image(got["/depth/confident"][0][1])).mean() < 0.7
    for _, info in got["/depth/camera_info"]:
        assert info.header.frame_id == rb.LEFT_FRAME
        np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), frames[0].K)
    assert [s for s, _ in got["/depth/camera_info"]] == stamps
    assert len(got[rb.TF_STATIC]) == 1 and len(got[rb.TF_STATIC][0][1].transforms) == 2

    # an existing destination is refused before any work
    assert _bag_eval(rig["student"], bag, "--lidar-topic", rb.LIDAR_POINTS, "--out-bag", out) == 2


def test_node_pipeline_and_out_bag_publish_identical_messages(rig, tmp_path):
    """One output composer: the same frames through the node's pipeline (`DepthPipeline`) and through
    bag-eval's output-bag writer give byte-identical messages on every depth topic."""
    from adu_depth_core.runtime.outputs import OUTPUTS
    from adu_depth_ros.params import NodeParams
    from adu_depth_ros.pipeline import DepthPipeline

    bag, out = rig["bags"]["mcap"], tmp_path / "out_bag"
    rc = _bag_eval(
        rig["student"], bag, "--lidar-topic", rb.LIDAR_POINTS, "--out-bag", out, "--sigma-threshold", 0.3
    )
    assert rc == 0
    with rb.open_bag(out) as reader:
        written = {n: [m for _, m in rb.iter_topic(reader, "/" + spec.topic)] for n, spec in OUTPUTS.items()}
    with rb.open_bag(bag) as reader:
        images = [m for _, m in rb.iter_topic(reader, rb.LEFT_IMAGE)]
        infos = [m for _, m in rb.iter_topic(reader, rb.LEFT_INFO)]
    estimator = DepthEstimator.from_path(rig["student"], device="cpu")
    pipeline = DepthPipeline(estimator, NodeParams(model_path=str(rig["student"]), sigma_threshold=0.3))
    for info in infos:
        pipeline.set_camera_info(info)
    for i, msg in enumerate(images):
        pipeline.submit(msg)
        result = pipeline.process(pipeline.slot.take(timeout=0))
        assert list(result.messages) == list(OUTPUTS) and result.warnings == []
        for name, composed in result.messages.items():
            assert rm.serialize(composed) == rm.serialize(written[name][i]), (i, name)
    confident = rm.msg_to_image(written["confident"][0])
    assert 0 < np.isnan(confident).mean() < 1  # the threshold splits the frame: the mask is compared too


def _rewritten_bag(rig, path, *, gt_offset_ns=0, tf=True, storage="mcap"):
    """The rig bag's messages again, with the depth GT stamped `gt_offset_ns` later and optionally no tf."""
    msgs = []
    with rb.open_bag(rig["bags"][storage]) as reader:
        for topic in (rb.LEFT_IMAGE, rb.LEFT_INFO, rb.DEPTH_GT, rb.LIDAR_POINTS, rb.TF_STATIC):
            if topic == rb.TF_STATIC and not tf:
                continue
            for stamp, msg in rb.iter_topic(reader, topic):
                if topic == rb.DEPTH_GT:
                    depth = rm.msg_to_depth(msg)
                    stamp += gt_offset_ns
                    msg = rm.depth_image_msg(depth, stamp, rb.LEFT_FRAME)
                msgs.append((topic, rb.RIG_TOPICS[topic], stamp, msg))
    return rb.write_topics_bag(path, sorted(msgs, key=lambda m: m[2]), storage)


def test_stamp_tolerance(rig, tmp_path):
    shifted = _rewritten_bag(rig, tmp_path / "shifted", gt_offset_ns=2_000_000)  # GT 2 ms after the image
    exact = tmp_path / "exact.json"
    assert _bag_eval(rig["student"], shifted, "--gt-topic", rb.DEPTH_GT, "--json", exact) == 0
    data = _json(exact)
    assert data["n_frames"] == N_FRAMES and data["n_images"] == 0 and data["n_skipped"] == N_FRAMES
    assert all(data[k] is None for k in SUMMARY_KEYS)  # every key is there, null: nothing was scored
    assert {s["reason"] for s in data["skipped"]} == {"no ground truth"}

    near = tmp_path / "near.json"
    assert (
        _bag_eval(rig["student"], shifted, "--gt-topic", rb.DEPTH_GT, "--tolerance-ms", 5, "--json", near)
        == 0
    )
    aligned = tmp_path / "aligned.json"
    assert _bag_eval(rig["student"], rig["bags"]["mcap"], "--gt-topic", rb.DEPTH_GT, "--json", aligned) == 0
    near, aligned = _json(near), _json(aligned)
    assert near["n_images"] == N_FRAMES
    for key in SCORED:
        assert near[key] == aligned[key], key


def test_extrinsic_file_replaces_tf_static(rig, tmp_path, capsys):
    no_tf = _rewritten_bag(rig, tmp_path / "no_tf", tf=False)
    assert _bag_eval(rig["student"], no_tf, "--lidar-topic", rb.LIDAR_POINTS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no /tf_static" in err[0] and "--extrinsic" in err[0]

    extrinsic = tmp_path / "T.yaml"
    extrinsic.write_text(json.dumps({"T_camera_from_lidar": rb.T_CAMERA_FROM_LIDAR.tolist()}))
    with_file, with_tf = tmp_path / "file.json", tmp_path / "tf.json"
    args = ("--lidar-topic", rb.LIDAR_POINTS)
    assert _bag_eval(rig["student"], no_tf, *args, "--extrinsic", extrinsic, "--json", with_file) == 0
    assert _bag_eval(rig["student"], rig["bags"]["mcap"], *args, "--json", with_tf) == 0
    a, b = _json(with_file), _json(with_tf)
    assert a["n_images"] == N_FRAMES
    for key in SCORED:
        assert a[key] == pytest.approx(b[key], rel=1e-9), key

    extrinsic.write_text(json.dumps([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    assert _bag_eval(rig["student"], no_tf, *args, "--extrinsic", extrinsic) == 2
    assert "not a rigid transform" in capsys.readouterr().err


def test_missing_topic_lists_the_bags_topics(rig, capsys):
    assert _bag_eval(rig["student"], rig["bags"]["mcap"], "--gt-topic", "/nope/depth") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "missing topic(s) /nope/depth" in err[0]
    for topic in rb.RIG_TOPICS:
        assert topic in err[0]


@pytest.mark.parametrize(
    "storage, damage", [("mcap", "garbage"), ("mcap", "truncated"), ("sqlite3", "garbage")]
)
def test_corrupt_bag(rig, tmp_path, capsys, storage, damage):
    broken = tmp_path / "broken"
    shutil.copytree(rig["bags"][storage], broken)
    data_file = next(p for p in broken.iterdir() if p.suffix in (".mcap", ".db3"))
    raw = data_file.read_bytes()
    data_file.write_bytes(b"\x00garbage" * 64 if damage == "garbage" else raw[: len(raw) // 2])
    assert _bag_eval(rig["student"], broken, "--lidar-topic", rb.LIDAR_POINTS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(broken) in err[0] and "Traceback" not in err[0]


def test_model_that_fails_to_load(rig, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert _bag_eval(bad, rig["bags"]["mcap"], "--gt-topic", rb.DEPTH_GT) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "not a readable checkpoint" in err[0]
    missing = tmp_path / "missing.onnx"
    assert _bag_eval(missing, rig["bags"]["mcap"], "--gt-topic", rb.DEPTH_GT) == 2
    assert "model file not found" in capsys.readouterr().err


def test_save_vis_and_per_frame(rig, tmp_path, capsys):
    vis = tmp_path / "vis"
    args = ("--lidar-topic", rb.LIDAR_POINTS, "--save-vis", vis, "--max-vis", 2, "--per-frame", "--limit", 3)
    rc = _bag_eval(rig["student"], rig["bags"]["sqlite3"], *args)
    assert rc == 0
    assert len(list(vis.glob("0*.png"))) == 2 and (vis / "sparsification.png").is_file()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("1600000000.")]
    assert len(lines) == 3 and all("abs_rel" in line and " ms" in line for line in lines)
    assert math.isfinite(float(lines[0].split("abs_rel")[1].split()[0]))


def test_onnx_backend_bag_eval_equals_eval(rig, tmp_path):
    """The exported graph through ONNX Runtime: both commands again agree exactly on the same backend."""
    from adu_depth_core.runtime import export_onnx

    onnx = export_onnx(rig["student"], tmp_path / "student.onnx", size=NET)
    backend = ("--backend", "onnxruntime")
    ev_json, bag_json = tmp_path / "eval.json", tmp_path / "bag.json"
    rc = main(["eval", "--model", str(onnx), "--dataset", "kitti", "--data-path", str(rig["kitti"]), *backend,
               "--device", "cpu", "--crop", "garg", "--json", str(ev_json)])  # fmt: skip
    assert rc == 0
    rc = _bag_eval(onnx, rig["bags"]["sqlite3"], "--gt-topic", rb.DEPTH_GT, *backend, "--json", bag_json)
    assert rc == 0
    ev, bag = _json(ev_json), _json(bag_json)
    assert ev["meta"]["backend"] == bag["meta"]["backend"] == "onnxruntime"
    assert bag["n_images"] == N_FRAMES
    for key in SCORED:
        assert bag[key] == ev["dense_" + key], key


# ---- bad topics, outputs inside the bag, a full disk -----------------------------------------------------


def _line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_depth_image_on_the_image_topic_names_topic_stamp_and_encoding(rig, capsys):
    bag = rig["bags"]["mcap"]
    args = ("--image-topic", rb.DEPTH_GT, "--camera-info-topic", rb.LEFT_INFO, "--gt-topic", rb.DEPTH_GT)
    assert _bag_eval(rig["student"], bag, *args) == 2
    line = _line(capsys)
    assert line.startswith(f"adu-depth bag-eval: error: {rb.DEPTH_GT} at ")
    assert " s: expected a camera image" in line
    assert "got encoding '32FC1'" in line


def test_save_vis_inside_the_input_bag_is_refused_and_the_bag_is_untouched(rig, capsys):
    bag = rig["bags"]["mcap"]
    before = _tree_digest(bag)
    for vis in (bag, bag / "vis"):
        args = ("--gt-topic", rb.DEPTH_GT, "--save-vis", vis, "--overwrite")
        assert _bag_eval(rig["student"], bag, *args) == 2
        assert f"--save-vis {vis} lies inside the input {bag}" in _line(capsys)
    assert _tree_digest(bag) == before


def test_full_disk_while_writing_the_out_bag_is_one_line_and_leaves_nothing(
    rig, tmp_path, capsys, monkeypatch
):
    import errno

    from rosbags.rosbag2 import Writer

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Writer, "write", full)
    out = tmp_path / "out_bag"
    assert _bag_eval(rig["student"], rig["bags"]["mcap"], "--gt-topic", rb.DEPTH_GT, "--out-bag", out) == 2
    assert _line(capsys) == (
        f"adu-depth bag-eval: error: {out}: no space left on the device; free space or choose another output "
        "location"
    )
    assert list(tmp_path.iterdir()) == []  # neither the bag nor its temp folder


def test_msg_to_rgb_refuses_depth_encodings():
    msg = rm.image_to_msg(np.ones((4, 6), np.float32), "32FC1", 5, "cam")
    with pytest.raises(ValueError, match=r"expected a camera image .* got encoding '32FC1' \(4x6\)"):
        rm.msg_to_rgb(msg)
    rgb = np.arange(72, dtype=np.uint8).reshape(4, 6, 3)
    np.testing.assert_array_equal(rm.msg_to_rgb(rm.image_to_msg(rgb, "rgb8", 5, "cam")), rgb)


def test_bag_metadata_file_names_cannot_leave_the_bag(rig, tmp_path):
    """rosbag2 metadata names its storage files; a name climbing out of the bag folder is read as the file
    of that name inside the bag (rosbags takes the base name), never outside."""
    import yaml

    bag = tmp_path / "bag"
    shutil.copytree(rig["bags"]["mcap"], bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    name = info["relative_file_paths"][0]
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(bag / name, outside / name)
    info["relative_file_paths"] = [f"../outside/{name}"]
    (bag / name).unlink()
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ValueError, match="not a readable rosbag2 bag"):
        with rb.open_bag(bag):
            pass


COMPRESSED = rb.LEFT_IMAGE + "/compressed"


def _compressed_bag(rig, path, fmt, corrupt_index=None):
    """The rig bag with its left camera as image_transport's compressed topic (JPEG or PNG payloads)."""
    msgs = []
    with rb.open_bag(rig["bags"]["mcap"]) as reader:
        for topic in (rb.LEFT_IMAGE, rb.LEFT_INFO, rb.DEPTH_GT):
            for i, (stamp, msg) in enumerate(rb.iter_topic(reader, topic)):
                if topic == rb.LEFT_IMAGE:
                    msg = rm.compressed_image_msg(rm.msg_to_image(msg), fmt, stamp, rb.LEFT_FRAME)
                    if i == corrupt_index:
                        msg.data = msg.data[: len(msg.data) // 3].copy()
                    msgs.append((COMPRESSED, rm.COMPRESSED_IMAGE, stamp, msg))
                else:
                    msgs.append((topic, rb.RIG_TOPICS[topic], stamp, msg))
    return rb.write_topics_bag(path, sorted(msgs, key=lambda m: m[2]), "mcap")


def test_compressed_camera_png_equals_raw_and_jpeg_is_close(rig, kitti_eval, tmp_path):
    ev = kitti_eval["student"]
    for fmt in ("png", "jpeg"):
        bag = _compressed_bag(rig, tmp_path / fmt, fmt)
        out = tmp_path / f"{fmt}.json"
        # camera_info is found beside the base topic: .../image_raw/compressed -> .../camera_info
        assert _bag_eval(rig["student"], bag, "--image-topic", COMPRESSED, "--gt-topic", rb.DEPTH_GT,
                         "--json", out) == 0  # fmt: skip
        got = _json(out)
        assert got["meta"]["camera_info_topic"] == rb.LEFT_INFO
        assert got["n_images"] == N_FRAMES and got["n_skipped"] == 0
        if fmt == "png":  # lossless: the same numbers as the raw bag and the KITTI tree
            for key in SCORED:
                assert got[key] == ev["dense_" + key], key
        else:
            assert got["abs_rel"] == pytest.approx(ev["dense_abs_rel"], rel=0.05)


def test_corrupt_compressed_frame_is_skipped_and_counted(rig, tmp_path, capsys):
    bag = _compressed_bag(rig, tmp_path / "bad", "jpeg", corrupt_index=1)
    out_bag, out = tmp_path / "out_bag", tmp_path / "m.json"
    rc = _bag_eval(rig["student"], bag, "--image-topic", COMPRESSED, "--gt-topic", rb.DEPTH_GT,
                   "--json", out, "--out-bag", out_bag, "--per-frame")  # fmt: skip
    assert rc == 0
    got = _json(out)
    assert (got["n_frames"], got["n_images"], got["n_skipped"]) == (N_FRAMES, N_FRAMES - 1, 1)
    assert len(got["skipped"]) == 1 and "corrupt compressed image" in got["skipped"][0]["reason"]
    assert "truncated" in got["skipped"][0]["reason"]
    printed = capsys.readouterr().out
    assert "1600000000.100000000  skipped: corrupt compressed image" in printed
    with rb.open_bag(out_bag) as reader:
        topics = rb.bag_topics(reader)
        assert topics[COMPRESSED] == rm.COMPRESSED_IMAGE  # passed through as recorded
        assert len(list(rb.iter_topic(reader, COMPRESSED))) == N_FRAMES
        assert len(list(rb.iter_topic(reader, "/depth/image"))) == N_FRAMES - 1
