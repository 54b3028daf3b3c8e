"""`adu-depth demo --quick` end to end (a tiny budget): every stage, the report, and stage reuse."""

from __future__ import annotations

import json

import pytest

from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.cli import main
from adu_depth_core.demo import STAGES
from adu_depth_core.demo_report import seed_section

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


def test_more_seeds_train_only_the_new_students_and_report_the_spread(demo_dir):
    teacher, student = (demo_dir / m / "last.pt" for m in ("teacher", "student"))
    before = teacher.stat().st_mtime_ns, student.stat().st_mtime_ns
    assert main(["demo", "--quick", "--steps", "12", "--workdir", str(demo_dir), "--seeds", "2"]) == 0
    assert (teacher.stat().st_mtime_ns, student.stat().st_mtime_ns) == before  # seed 0 is reused
    for name in ("student", "baseline"):
        ckpt = load_checkpoint(demo_dir / "seeds" / f"{name}_seed1" / "last.pt")
        assert ckpt["config"]["seed"] == 1 and ckpt["step"] == 12
        assert (demo_dir / "eval" / "seeds" / f"{name}_seed1.json").is_file()
    done = json.loads((demo_dir / "stages.json").read_text())["done"]
    assert done["seeds"]["seeds"] == done["report"]["seeds"] == 2
    report = (demo_dir / "report.md").read_text()
    assert "Both students over 2 seeds" in report and " ± " in report
    assert "twice the larger spread" in report


def testseed_section_compares_the_gain_with_twice_the_spread():
    def run(abs_rel, rmse):
        return {"abs_rel": abs_rel, "rmse": rmse, "d1": 0.9, "aurg_abs_rel": 0.05,
                "dense_abs_rel": abs_rel * 2, "dense_rmse": rmse}
    text = seed_section({"baseline": [run(0.20, 5.0), run(0.22, 5.2)],
                          "student": [run(0.10, 5.0), run(0.11, 5.3)]})
    assert "| Baseline student | sparse | 0.2100 ± 0.0141 | 5.1000 ± 0.1414 | 0.9000 ± 0.0000 | - |" in text
    assert "| ADU-Depth student | sparse | 0.1050 ± 0.0071 |" in text and "0.0500 ± 0.0000 |" in text
    assert "sparse abs_rel: the distilled student is ahead by 0.1050, beyond twice the larger spread " \
        "(0.0283)" in text
    assert "sparse rmse: the distilled student is behind by 0.0500, NOT beyond" in text
    one = seed_section({"baseline": [run(0.2, 5.0)], "student": [run(0.1, 5.0)]})
    assert "--seeds 3" in one and "±" not in one


def test_demo_seeds_must_be_positive(tmp_path, capsys):
    assert main(["demo", "--quick", "--seeds", "0", "--workdir", str(tmp_path / "d")]) == 2
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err


def test_another_budget_in_the_same_workdir_is_refused(demo_dir, capsys):
    assert main(["demo", "--quick", "--steps", "13", "--workdir", str(demo_dir)]) == 2
    assert "another budget" in capsys.readouterr().err
