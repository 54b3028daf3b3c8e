"""`adu-depth demo --quick` end to end (a tiny budget): every stage, the report, and stage reuse."""

from __future__ import annotations

import json

import pytest

from adu_depth_core.cli import main
from adu_depth_core.demo import STAGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--quick", "--steps", "12", "--workdir", str(workdir)]) == 0
    return workdir


def test_every_stage_finishes_and_the_report_has_its_parts(demo_dir):
    done = json.loads((demo_dir / "stages.json").read_text())["done"]
    assert list(done) == list(STAGES)
    report = (demo_dir / "report.md").read_text()
    for row in ("Teacher (stereo)", "Baseline student", "ADU-Depth student", "AUSE AbsRel"):
        assert row in report
    assert "figures/comparison.png" in report and (demo_dir / "figures" / "comparison.png").stat().st_size > 0
    assert (demo_dir / "figures" / "training_curves.png").stat().st_size > 0
    for topic in ("depth/image", "depth/uncertainty", "depth/camera_info"):
        assert f"`{topic}`" in report or f"`/{topic}`" in report


def test_bag_eval_matches_the_dataset_evaluation_of_the_same_model(demo_dir):
    bag = json.loads((demo_dir / "bag_eval" / "bag_eval.json").read_text())
    kitti = json.loads((demo_dir / "bag_eval" / "dataset_eval_onnx.json").read_text())
    assert bag["n_images"] == kitti["n_images"] == 12
    # The KITTI tree stores GT as uint16 metres·256 (≤ 1/512 m rounding); the bag's LiDAR points are float32.
    for key in ("abs_rel", "rmse", "d1", "ause_abs_rel"):
        assert bag[key] == pytest.approx(kitti[key], rel=1e-3, abs=1e-6), key


def test_a_rerun_reuses_finished_stages_and_rebuilds_a_missing_one(demo_dir):
    ckpt = demo_dir / "student" / "last.pt"
    before = ckpt.stat().st_mtime_ns
    state_path = demo_dir / "stages.json"
    state = json.loads(state_path.read_text())
    del state["done"]["report"]
    state_path.write_text(json.dumps(state))
    (demo_dir / "report.md").unlink()
    assert main(["demo", "--quick", "--steps", "12", "--workdir", str(demo_dir)]) == 0
    assert (demo_dir / "report.md").is_file() and ckpt.stat().st_mtime_ns == before


def test_another_budget_in_the_same_workdir_is_refused(demo_dir, capsys):
    assert main(["demo", "--quick", "--steps", "13", "--workdir", str(demo_dir)]) == 2
    assert "another budget" in capsys.readouterr().err
