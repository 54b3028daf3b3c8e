"""`adu-depth eval` and the shared runner `adu_depth_core.evaluate` on synthetic KITTI trees and the rig.

Models are nano networks with untrained weights: the tests check plumbing and that the runner's numbers
are exactly the metrics module's, not that the model is good.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from adu_depth_core.checkpoint import save_checkpoint
from adu_depth_core.cli import main
from adu_depth_core.config import to_dict
from adu_depth_core.data.kitti import KittiDepthDataset
from adu_depth_core.evaluate import (
    SUMMARY_KEYS,
    EstimatorPredictor,
    EvalSample,
    dataset_samples,
    evaluate_samples,
    load_predictor,
)
from adu_depth_core.evaluation import (
    OFFICIAL_KEYS,
    UNCERTAINTY_KEYS,
    MetricAccumulator,
    evaluate_image,
    flip_tta,
)
from adu_depth_core.models import ModelConfig, build_student, build_teacher

NET = (64, 224)
SIZE = "64x224"
FOCAL = 120.0
N_FRAMES = 9  # --none-every 8: frame 7 has no GT
REQUIRED = (
    *("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3"),
    *("n_images", "n_skipped"),
)


def _save(path, stage):
    torch.manual_seed(0)
    cfg = ModelConfig(preset="nano", input_size=NET)
    model = build_student(cfg) if stage == "student" else build_teacher(cfg)
    meta = {"focal_px": FOCAL}
    save_checkpoint(
        path, {"stage": stage, "model_config": to_dict(cfg), "model": model.state_dict(), "meta": meta}
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {stage: _save(root / f"{stage}.pt", stage) for stage in ("student", "teacher")}


def _eval(model, tree, *extra):
    """`adu-depth eval` on a KITTI tree; returns the exit code."""
    cmd = ["eval", "--model", str(model), "--dataset", "kitti", "--data-path", str(tree), "--device", "cpu"]
    return main([*cmd, *map(str, extra)])


@pytest.fixture(scope="module")
def kitti_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "kitti"
    assert main(["synth", "--out", str(out), "--format", "kitti", "--frames", str(N_FRAMES), "--size", SIZE,
                 "--split", "test"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def eval_json(models, kitti_tree, tmp_path_factory):
    """`adu-depth eval` of the student on the tree, with pictures."""
    out = tmp_path_factory.mktemp("eval")
    rc = _eval(
        models["student"], kitti_tree, "--crop", "garg", "--json", out / "m.json", "--save-vis", out / "vis"
    )
    assert rc == 0
    return json.loads((out / "m.json").read_text()), out / "vis"


def _kitti_dataset(tree, **kw):
    split = tree / "splits" / "eigen_test_files_with_gt.txt"
    return KittiDepthDataset(tree, tree / "data_depth_annotated", split, mode="eval", kb_crop=False, **kw)


def test_eval_kitti_tree_counts_none_lines_and_has_every_key(eval_json, kitti_tree):
    data, _ = eval_json
    assert data["n_images"] == N_FRAMES - 1
    assert data["n_skipped"] == 1
    lines = (kitti_tree / "splits" / "eigen_test_files_with_gt.txt").read_text().split("\n")
    none_ids = [line.split()[0] for line in lines if line.endswith(" None") or " None " in line]
    assert [s["id"] for s in data["skipped"]] == none_ids
    assert data["skipped"][0]["reason"] == "no ground truth"
    for key in (*REQUIRED, *OFFICIAL_KEYS, *UNCERTAINTY_KEYS):
        assert key in data, key
        assert isinstance(data[key], int | float) and math.isfinite(data[key]), key
    assert 0 <= data["d1"] <= data["d2"] <= data["d3"] <= 1
    assert data["abs_error_rel"] == pytest.approx(100 * data["abs_rel"])
    # the tree carries the rig's dense depth: a second set with the prefix, over the same images
    assert data["dense_n_images"] == N_FRAMES - 1
    assert all(math.isfinite(data["dense_" + k]) for k in ("abs_rel", "rmse", "d1", "ause_rmse"))
    assert len(data["per_image"]) == N_FRAMES
    for p in (50, 90, 99):
        assert data[f"latency_p{p}_ms"] > 0
    assert data["meta"]["crop"] == "garg" and data["meta"]["dataset"] == "kitti"
    assert len(data["sparsification"]["abs_rel"]["model"]) == 51


def test_eval_numbers_are_the_metrics_module_on_the_same_frames(eval_json, kitti_tree, models):
    """The runner feeds full-resolution uint8 frames with their K to the estimator and scores with
    evaluate_image: the same loop written by hand gives the same numbers."""
    from adu_depth_core.runtime import DepthEstimator

    data, _ = eval_json
    est = DepthEstimator.from_path(models["student"], device="cpu")
    ds = _kitti_dataset(kitti_tree)
    acc = MetricAccumulator()
    for i in range(len(ds)):
        raw = ds.load_raw(i)
        if not raw["has_gt"]:
            acc.add(None, raw["id"])
            continue
        rgb = np.rint(raw["left"] * 255).astype(np.uint8)
        depth, sigma = est.estimate(rgb, raw["K"])
        acc.add(evaluate_image(depth, raw["depth"], sigma, crop="garg"), raw["id"])
    mean = acc.mean()
    assert acc.n_images == data["n_images"] and acc.n_skipped == data["n_skipped"]
    for key in (*SUMMARY_KEYS, *UNCERTAINTY_KEYS):
        assert data[key] == pytest.approx(mean[key], rel=1e-12, abs=1e-12), key


def test_eval_pictures(eval_json):
    data, vis = eval_json
    panels = sorted(vis.glob("0*.png"))
    assert len(panels) == data["n_images"]  # one per scored image (max-vis 20)
    panel = cv2.imread(str(panels[0]))
    assert panel is not None and panel.shape[1] == 640  # small frames are enlarged so titles fit
    # input, GT, depth, uncertainty, error map: five 224x64 images scaled to 640 wide, plus five title bars
    assert panel.shape[0] > 5 * 64 * 640 / 224
    assert (vis / "sparsification.png").is_file()


def test_eval_limit_protocol_official_and_table(models, kitti_tree, tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = _eval(models["student"], kitti_tree, "--protocol", "kitti-official", "--limit", 3, "--json", out)
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["n_images"] + data["n_skipped"] == 3
    assert data["meta"]["crop"] == "none"  # the official benchmark scores the whole image
    table = capsys.readouterr().out
    assert "| SILog ↓ | sqErrorRel ↓ | absErrorRel ↓ | iRMSE ↓ | RMSE ↓" in table
    assert "KITTI official protocol" in table and "no crop" in table


def test_eval_default_crop_needs_kitti_sized_images(models, kitti_tree, capsys):
    rc = _eval(models["student"], kitti_tree)
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "crop 'garg_kb' does not fit a 64x224 image" in err[0] and "'garg'" in err[0]


def test_eval_teacher_on_stereo_input(models, kitti_tree, tmp_path, capsys):
    out = tmp_path / "t.json"
    rc = _eval(models["teacher"], kitti_tree, "--crop", "garg", "--json", out)
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["meta"]["stage"] == "teacher"
    assert data["n_images"] == N_FRAMES - 1 and data["n_skipped"] == 1
    assert not any(k in data for k in UNCERTAINTY_KEYS)  # no σ from the teacher
    assert all(math.isfinite(data[k]) for k in ("abs_rel", "rmse", "d1"))
    # flip TTA is not defined for a stereo pair
    rc = _eval(models["teacher"], kitti_tree, "--crop", "garg", "--flip-tta")
    assert rc == 2
    assert "--flip-tta is not defined for a stereo teacher" in capsys.readouterr().err


def test_teacher_predictor_runs_cat_left_right(models, kitti_tree):
    """The teacher sees left and right: swapping in another right image changes its depth."""
    teacher = load_predictor(models["teacher"], device="cpu")
    assert isinstance(teacher, EstimatorPredictor) and teacher.needs_right and not teacher.has_sigma
    assert teacher.estimator.info.stage == "teacher" and teacher.estimator.backend_name == "torch"
    sample = next(dataset_samples(_kitti_dataset(kitti_tree)))
    d1, s1 = teacher.predict(sample.image, sample.K, sample.right)
    d2, _ = teacher.predict(sample.image, sample.K, sample.image)
    assert s1 is None and d1.shape == sample.image.shape[:2] and np.isfinite(d1).all()
    assert not np.allclose(d1, d2)
    with pytest.raises(ValueError, match="needs the right image"):
        teacher.predict(sample.image, sample.K)
    # the teacher is never exported: only the torch backend runs it, said in one line naming the file
    with pytest.raises(ValueError, match="stereo teacher checkpoint; it runs on backend 'torch' only"):
        load_predictor(models["teacher"], backend="onnxruntime", device="cpu")


def test_in_memory_model_matches_the_checkpoint_estimator(models, kitti_tree):
    """An in-memory DepthNet (training validation) goes through the runtime's own pre/post-processing,
    on its own device, and gets its training flag back."""
    from adu_depth_core.checkpoint import load_checkpoint
    from adu_depth_core.models import load_model
    from adu_depth_core.runtime import DepthEstimator

    sample = next(dataset_samples(_kitti_dataset(kitti_tree)))
    for stage in ("student", "teacher"):
        from_file = load_predictor(models[stage], device="cpu")
        model = load_model(load_checkpoint(models[stage])).train()
        in_memory = DepthEstimator.from_model(model, FOCAL)
        assert in_memory.info.stage == stage and in_memory.info.has_sigma == (stage == "student")
        assert in_memory.info.focal_px == from_file.estimator.info.focal_px == FOCAL
        d_file, s_file = from_file.predict(sample.image, sample.K, sample.right)
        d_mod, s_mod = in_memory.estimate(sample.image, sample.K, right=sample.right)
        np.testing.assert_allclose(d_mod, d_file, rtol=1e-5)
        if stage == "student":
            np.testing.assert_allclose(s_mod, s_file, rtol=1e-5)
        else:
            assert s_mod is None and s_file is None
        assert model.training is True  # run in eval mode, training flag restored


def test_flip_tta_and_kb_crop_policy(models, kitti_tree):
    predictor = load_predictor(models["student"], device="cpu")
    samples = list(dataset_samples(_kitti_dataset(kitti_tree), limit=2))
    result = evaluate_samples(predictor, samples, crop="garg", flip_tta=True)
    acc = MetricAccumulator()
    for s in samples:
        depth, sigma = flip_tta(lambda img, K=s.K: predictor.predict(img, K), s.image)
        acc.add(evaluate_image(depth, s.gt, sigma, crop="garg"), s.id)
    for key in ("abs_rel", "rmse", "d1", "ause_abs_rel"):
        assert result.summary()[key] == pytest.approx(acc.mean()[key], rel=1e-12)

    # kb_crop policy on a frame larger than the network: pixels outside the crop are not scored
    kb = load_predictor(models["student"], policy="kb_crop", device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 256, 3), dtype=np.uint8)
    gt = np.full((96, 256), 10.0, np.float32)
    seen = kb.seen_mask((96, 256))
    assert seen.sum() == NET[0] * NET[1] and seen[-1, 128] and not seen[0, 0]
    res = evaluate_samples(kb, [EvalSample("x", image, gt)])
    depth, sigma = kb.predict(image)
    assert np.isnan(depth[0, 0])
    expected = evaluate_image(depth, gt, sigma, mask=seen)
    assert res.summary()["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-12)


def test_add_batch_keeps_the_records_of_frame_by_frame(models, kitti_tree):
    """One network call for several frames (validation's path): the same records in the same order, and
    the same numbers to float noise; frames without GT are not predicted."""
    from adu_depth_core.evaluate import Evaluator

    samples = list(dataset_samples(_kitti_dataset(kitti_tree)))  # frame 7 has no GT
    one, batched = (Evaluator(load_predictor(models["student"], device="cpu"), crop="garg") for _ in range(2))
    for s in samples:
        one.add(s)
    frames = batched.add_batch(samples[:5]) + batched.add_batch(samples[5:])
    assert [f.id for f in frames] == [s.id for s in samples] and frames[7].depth is None
    assert [r["id"] for r in batched.records] == [r["id"] for r in one.records]
    assert [r.get("skipped") for r in batched.records] == [r.get("skipped") for r in one.records]
    a, b = one.result().summary(), batched.result().summary()
    assert a["n_images"] == b["n_images"] == N_FRAMES - 1 and a["n_skipped"] == b["n_skipped"] == 1
    for key in ("abs_rel", "rmse", "d1", "dense_abs_rel", "ause_abs_rel"):
        assert b[key] == pytest.approx(a[key], rel=1e-5), key


def test_empty_gt_is_skipped_and_summary_keeps_keys(models):
    predictor = load_predictor(models["student"], device="cpu")
    image = np.zeros((64, 224, 3), np.uint8)
    result = evaluate_samples(predictor, [EvalSample("empty", image, np.zeros((64, 224), np.float32)),
                                          EvalSample("none", image, None)])  # fmt: skip
    summary = result.summary()
    assert summary["n_images"] == 0 and summary["n_skipped"] == 2
    assert all(summary[k] is None for k in SUMMARY_KEYS)
    reasons = [r["reason"] for r in result.to_dict()["skipped"]]
    assert reasons == ["no valid ground-truth pixel", "no ground truth"]
    assert len(result.latencies_ms) == 1  # frames without GT are not run


def test_eval_synthetic_dataset(models, tmp_path, capsys):
    out = tmp_path / "s.json"
    synthetic = ["eval", "--model", str(models["student"]), "--dataset", "synthetic", "--device", "cpu"]
    rc = main([*synthetic, "--frames", "2", "--size", SIZE, "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["n_images"] == 2 and data["dense_n_images"] == 2
    assert [r["id"] for r in data["per_image"]] == ["seed-2000000", "seed-2000001"]
    rc = main([*synthetic, "--data-path", str(tmp_path)])
    assert rc == 2 and "--data-path is not used with --dataset synthetic" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, suffix, match",
    [
        (b"not a checkpoint", ".pt", "not a readable checkpoint"),
        (b"\x08\x01garbage", ".onnx", "not a loadable ONNX"),
    ],
)
def test_eval_model_that_fails_to_load(tmp_path, kitti_tree, capsys, content, suffix, match):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content)
    rc = _eval(bad, kitti_tree, "--crop", "garg")
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and match in err[0]


def test_eval_kitti_needs_a_split(models, tmp_path, capsys):
    (tmp_path / "splits").mkdir()
    rc = _eval(models["student"], tmp_path)
    assert rc == 2 and "needs --split FILE" in capsys.readouterr().err


def test_eval_drivingstereo_tree(models, tmp_path):
    tree = tmp_path / "ds"
    assert main(["synth", "--out", str(tree), "--format", "drivingstereo", "--frames", "2", "--size", SIZE,
                 "--split", "test"]) == 0  # fmt: skip
    out = tmp_path / "ds.json"
    cmd = ["eval", "--model", str(models["student"]), "--dataset", "drivingstereo", "--device", "cpu"]
    rc = main([*cmd, "--data-path", str(tree), "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["n_images"] == 2 and data["n_skipped"] == 0 and data["meta"]["crop"] == "none"
    assert all(r["id"].startswith("test-left-image/") for r in data["per_image"])


# ---- outputs checked before the evaluation; inputs never touched --------------------------------------


def _digest(root):
    import hashlib

    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_eval_outputs_are_checked_before_the_model_loads(models, kitti_tree, tmp_path, capsys, monkeypatch):
    import adu_depth_core.evaluate as ev

    def never(*a, **k):
        raise AssertionError("the evaluation started before its outputs were checked")

    monkeypatch.setattr(ev, "load_predictor", never)
    before = _digest(kitti_tree)
    assert _eval(models["student"], kitti_tree, "--json", tmp_path) == 2  # a folder as --json
    assert _err_line(capsys).endswith(f"--json {tmp_path} is a folder; expected a file path")
    inside = kitti_tree / "2011_09_26"
    assert _eval(models["student"], kitti_tree, "--save-vis", inside, "--overwrite") == 2
    assert f"--save-vis {inside} lies inside the input {kitti_tree}; inputs are never modified" in _err_line(
        capsys
    )
    full = tmp_path / "vis"
    full.mkdir()
    (full / "keep.png").write_bytes(b"old")
    assert _eval(models["student"], kitti_tree, "--save-vis", full) == 2
    assert "already holds files (pass --overwrite" in _err_line(capsys)
    old = tmp_path / "m.json"
    old.write_text("{}")
    assert _eval(models["student"], kitti_tree, "--json", old) == 2
    assert f"--json {old} already exists" in _err_line(capsys)
    assert _digest(kitti_tree) == before and old.read_text() == "{}"


def test_eval_overwrite_writes_into_an_existing_vis_folder(models, kitti_tree, tmp_path):
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "notes.txt").write_text("kept")
    js = tmp_path / "m.json"
    js.write_text("{}")
    args = ("--crop", "garg", "--limit", "2", "--save-vis", vis, "--json", js, "--overwrite")
    assert _eval(models["student"], kitti_tree, *args) == 0
    assert json.loads(js.read_text())["n_images"] == 2
    assert (vis / "notes.txt").read_text() == "kept" and len(list(vis.glob("0*.png"))) == 2


@pytest.mark.parametrize(
    "line, what",
    [
        ("{rgb} ../../outside.png 120.0", "ground truth: path '../../outside.png'"),
        ("{rgb} ../../../../../etc/passwd 120.0", "ground truth: path '../../../../../etc/passwd'"),
        ("{rgb} /etc/passwd 120.0", "ground truth: path '/etc/passwd'"),
        ("depth_selection/../../../etc/passwd", "path 'depth_selection/../../../etc/passwd'"),
    ],
)
def test_split_paths_must_stay_inside_their_root(models, kitti_tree, tmp_path, capsys, line, what):
    split = kitti_tree / "splits" / "eigen_test_files_with_gt.txt"
    rgb = split.read_text().split()[0]
    bad = tmp_path / "bad_split.txt"
    bad.write_text(line.format(rgb=rgb) + "\n")
    assert _eval(models["student"], kitti_tree, "--split", bad, "--gt-path", kitti_tree) == 2
    err = _err_line(capsys)
    assert f"{bad}:1" in err and what in err and "must be relative and stay inside" in err


def test_drivingstereo_list_paths_must_stay_inside_the_root(tmp_path):
    from adu_depth_core.data.drivingstereo import DrivingStereoDataset

    root = tmp_path / "ds"
    assert main(["synth", "--out", str(root), "--format", "drivingstereo", "--frames", "1", "--size", SIZE,
                 "--split", "test"]) == 0  # fmt: skip
    listing = tmp_path / "list.txt"
    listing.write_text("../../outside.png\n")
    with pytest.raises(ValueError, match=r"list.txt:1: path '../../outside.png' must be relative"):
        DrivingStereoDataset(root, "test", list_file=listing, mode="eval", crop_size=None)


def _without_timings(data):
    """An eval JSON without what depends on the clock (latencies)."""
    if isinstance(data, dict):
        return {k: _without_timings(v) for k, v in data.items() if not k.startswith("latency")}
    if isinstance(data, list):
        return [_without_timings(v) for v in data]
    return data


def test_the_command_only_parses_flags_into_the_library_call(models, kitti_tree, tmp_path):
    """`adu-depth eval` = `evaluate_dataset` on the typed spec of its flags (what the demo calls); the
    dataset builder finds the split file and the GT root of a `synth` tree by itself."""
    from adu_depth_core.data.factory import EvalDataSpec, build_eval_dataset
    from adu_depth_core.eval_run import EvalSpec, ScoringSpec, evaluate_dataset, write_result_json

    data = EvalDataSpec("kitti", root=kitti_tree)
    dataset = build_eval_dataset(data)
    assert len(dataset) == N_FRAMES and dataset.gt_path == kitti_tree / "data_depth_annotated"
    rc = _eval(models["student"], kitti_tree, "--crop", "garg", "--limit", 5, "--json", tmp_path / "cli.json")
    assert rc == 0
    spec = EvalSpec(ScoringSpec(models["student"], device="cpu", crop="garg"), data, limit=5)
    write_result_json(tmp_path / "lib.json", evaluate_dataset(spec))
    cli, lib = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("cli", "lib"))
    assert lib["n_images"] + lib["n_skipped"] == 5
    assert _without_timings(lib) == _without_timings(cli)
