"""Every recipe in training/configs parses into TrainConfig; the paper recipes carry the paper's settings;
teacher/student pairs fit together; the synthetic recipes run end to end (2 steps each) from the CLI."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from adu_depth_core.cli import main as cli_main
from adu_depth_core.config import from_dict, read_yaml, to_dict
from adu_depth_core.data.kitti import parse_split_file
from adu_depth_core.train.config import DataConfig, TrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "training" / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))
KINDS = typing.get_args(typing.get_type_hints(DataConfig)["kind"])
PAPER = ["kitti_eigen", "kitti_official", "drivingstereo"]


def load(name: str) -> TrainConfig:
    return from_dict(TrainConfig, read_yaml(CONFIGS / f"{name}.yaml"))


def test_recipes_exist():
    names = {p.stem for p in RECIPES}
    for base in [*PAPER, "synthetic"]:
        assert {f"{base}_teacher", f"{base}_student"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_strictly_and_round_trips(path):
    data = read_yaml(path)
    kind = data.get("data", {}).get("kind", "synthetic")
    if kind not in KINDS:
        pytest.skip(f"data.kind {kind!r} is not in this build's DataConfig ({KINDS})")
    cfg = from_dict(TrainConfig, data)
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg
    assert cfg.stage in path.stem
    assert Path(cfg.out_dir).name == path.stem or cfg.data.kind not in ("synthetic", "kitti", "drivingstereo")


@pytest.mark.parametrize("base", [*PAPER, "synthetic"])
def test_teacher_and_student_recipes_fit_together(base):
    teacher, student = load(f"{base}_teacher"), load(f"{base}_student")
    assert teacher.stage == "teacher" and student.stage == "student"
    assert student.teacher_checkpoint == str(Path(teacher.out_dir) / "last.pt")
    # distillation compares maps of the same size (the adapters bridge channel counts)
    s_model, t_model = student.model, teacher.model
    assert (s_model.input_size, s_model.max_depth) == (t_model.input_size, t_model.max_depth)
    assert dataclasses.replace(student.data, unlabeled=teacher.data.unlabeled) == teacher.data
    assert (student.optim, student.batch_size) == (teacher.optim, teacher.batch_size)
    if base == "synthetic":  # the CPU recipes: a cost-volume teacher, trained longer, and a CNN student
        assert teacher.steps >= student.steps
        assert teacher.model.teacher_fusion == "cost_volume" and student.model.preset == "ghostnet_nano"
        assert student.data.unlabeled.enabled and not teacher.data.unlabeled.enabled
    else:  # the paper's: one network, early fusion, equal budgets
        assert student.model == teacher.model and teacher.model.teacher_fusion == "concat"
        assert (student.steps, student.epochs) == (teacher.steps, teacher.epochs)


@pytest.mark.parametrize("base", PAPER)
def test_paper_recipes_use_the_papers_settings(base):
    for stage in ("teacher", "student"):
        cfg = load(f"{base}_{stage}")
        assert cfg.model.preset == "paper" and cfg.model.pretrained and cfg.model.max_depth == 80.0
        assert cfg.epochs == 40 and cfg.steps is None and cfg.batch_size == 4 and cfg.amp == "none"
        o = cfg.optim
        assert (o.name, o.lr, o.end_lr, o.betas, o.power, o.weight_decay, o.warmup_steps) == (
            "adam",
            2e-5,
            2e-6,
            (0.9, 0.999),
            0.9,
            0.0,
            0,
        )
        a = cfg.data.augment
        assert (a.enabled, a.rotation_deg, a.flip_prob, a.color_prob) == (True, 1.0, 0.5, 0.5)
        if base.startswith("kitti"):
            assert cfg.model.input_size == (352, 1120) and cfg.data.kind == "kitti" and cfg.data.kb_crop
        if stage == "student":
            d = cfg.distill
            assert (d.mode, d.focal, d.uem, d.attention) == ("full", True, True, True)
            assert (d.lambda_response, d.lambda_feature, d.lambda_focal) == (0.9, 0.6, 0.8)
            assert d.enc_levels == d.dec_levels == (0, 1, 2, 3)


def test_kitti_recipes_name_the_standard_split_lists(shared_dir):
    lists = Path(shared_dir) / "data" / "kitti_splits"
    eigen, official = load("kitti_eigen_teacher").data, load("kitti_official_teacher").data
    for split_path in (eigen.train_split, eigen.val_split, eigen.test_split, official.val_split):
        entries = parse_split_file(lists / Path(split_path).name)
        assert entries
    assert len(parse_split_file(lists / Path(eigen.test_split).name)) == 697
    assert {e.kind for e in parse_split_file(lists / Path(official.val_split).name)} == {"official"}


def test_synthetic_recipes_are_cpu_sized_and_run_from_the_cli(tmp_path, capsys):
    teacher, student = load("synthetic_teacher"), load("synthetic_student")
    for cfg in (teacher, student):
        assert cfg.model.preset in ("nano", "ghostnet_nano") and not cfg.model.pretrained
        assert cfg.data.kind == "synthetic"
        assert cfg.steps is not None and cfg.data.test_frames > 0
    small = [
        "steps=2",
        "data.train_frames=8",
        "data.val_frames=2",
        "num_workers=0",
        "val_every=0",
        "ckpt_every=0",
        "progress=false",
    ]
    t_out, s_out = tmp_path / "teacher", tmp_path / "student"
    assert (
        cli_main(
            [
                "train",
                "--config",
                str(CONFIGS / "synthetic_teacher.yaml"),
                "--out",
                str(t_out),
                "--set",
                *small,
            ]
        )
        == 0
    )
    t_summary = json.loads(capsys.readouterr().out)
    assert (
        cli_main(
            [
                "train",
                "--config",
                str(CONFIGS / "synthetic_student.yaml"),
                "--out",
                str(s_out),
                "--set",
                *small,
                f"teacher_checkpoint={t_out / 'last.pt'}",
            ]
        )
        == 0
    )
    s_summary = json.loads(capsys.readouterr().out)
    assert t_summary["steps"] == s_summary["steps"] == 2
    assert s_summary["best_metric"] == "abs_rel" and s_summary["val"]["n_images"] == 2
    assert {"ause_abs_rel", "dense_abs_rel"} <= set(s_summary["val"])
