"""Training engine: loss goes down (teacher and student), exact resume, checkpoint round trip, errors before
training, schedule / sampler / RNG-state helpers, and the Table 4 ablation runner — all on the nano preset
at 64x192 with a handful of synthetic frames."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from adu_depth_core.checkpoint import load_checkpoint, save_checkpoint
from adu_depth_core.cli import main as cli_main
from adu_depth_core.config import from_dict, to_dict
from adu_depth_core.data.drivingstereo import write_drivingstereo_tree
from adu_depth_core.data.factory import build_dataset, build_unlabeled_dataset
from adu_depth_core.data.kitti import GT_DIRNAME, write_kitti_tree
from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, frames_for_split, rig_intrinsics
from adu_depth_core.distill import sgbm_proxy_depth
from adu_depth_core.models import ModelConfig, build_model, load_model
from adu_depth_core.train import distributed as du
from adu_depth_core.train.ablation import parse_rows, run_ablation, score_checkpoint
from adu_depth_core.train.config import DataConfig, TrainConfig, UnlabeledConfig, load_train_config
from adu_depth_core.train.engine import DepthTrainer
from adu_depth_core.train.hooks import HookBase, PolynomialLR, metric_mode
from adu_depth_core.train.run import train
from adu_depth_core.train.state import FocalStats, get_rng_state, set_rng_state

SIZE = [64, 192]


def tiny(tmp_path: Path, name: str = "run", **top) -> dict:
    """A config dict for a few CPU steps: nano preset, 64x192, 12 training frames, batch 4."""
    d = {
        "stage": "teacher",
        "model": {"preset": "nano", "input_size": SIZE, "max_depth": 80.0},
        "data": {
            "kind": "synthetic",
            "train_frames": 12,
            "val_frames": 3,
            "test_frames": 3,
            "augment": {"enabled": True, "rotation_deg": 0.0, "flip_prob": 0.5, "color_prob": 0.5},
        },
        "optim": {"lr": 1e-3, "end_lr": 1e-4},
        "distill": {"min_depth": 1.0, "enc_levels": [1, 2, 3], "dec_levels": [1, 2, 3]},
        "steps": 6,
        "batch_size": 4,
        "num_workers": 0,
        "val_every": 0,
        "ckpt_every": 0,
        "log_every": 2,
        "out_dir": str(tmp_path / name),
        "progress": False,
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return d


def cfg_of(d: dict) -> TrainConfig:
    return from_dict(TrainConfig, d)


def fixed_batch(trainer: DepthTrainer, n: int = 4) -> dict:
    """The first n validation samples, collated: the same inputs before and after training."""
    ds = build_dataset(trainer.cfg.data, "val", trainer.cfg.model)
    return torch.utils.data.default_collate([ds[i] for i in range(min(n, len(ds)))])


@torch.no_grad()
def batch_loss(trainer: DepthTrainer, batch: dict) -> dict[str, float]:
    trainer.objective.eval()
    try:
        gt = batch["depth"]
        if trainer.stage == "teacher":
            stereo = torch.cat([batch["left"], batch["right"]], 1)
            proxy = None
            if trainer.cfg.proxy.enabled:
                proxy = sgbm_proxy_depth(
                    batch["left"], batch["right"], batch["focal"], batch["baseline"], gt, trainer.cfg.proxy
                )
            out = trainer.objective(stereo, gt, batch["focal"], batch["baseline"], proxy)
        else:
            t_out = trainer.teacher(torch.cat([batch["left"], batch["right"]], 1))
            out = trainer.objective(batch["left"], gt, t_out, 10**6)
        return {k: float(v) for k, v in out.items()}
    finally:
        trainer.objective.train()


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A teacher trained for a few steps (shared by the student tests)."""
    tmp = tmp_path_factory.mktemp("teacher")
    summary = train(cfg_of(tiny(tmp, "teacher", steps=8)))
    return Path(summary["last"])


# ------------------------------------------------------------------------------------------ learning


def test_teacher_training_lowers_the_loss_on_a_fixed_batch(tmp_path):
    trainer = DepthTrainer(cfg_of(tiny(tmp_path, steps=30, data={"augment": {"enabled": False}})))
    batch = fixed_batch(trainer)
    before = batch_loss(trainer, batch)
    trainer.train()
    after = batch_loss(trainer, batch)
    assert set(before) == {"silog", "total"}
    assert after["total"] < 0.85 * before["total"], (before, after)
    assert trainer.iter == 30
    lrs = trainer.optimizer.param_groups[0]["lr"]
    assert lrs == pytest.approx(1e-4, rel=1e-6)  # the poly schedule ends at end_lr


def test_photometric_teacher_training_lowers_both_terms(tmp_path):
    d = tiny(tmp_path, steps=30, data={"augment": {"enabled": False}}, photometric={"weight": 1.0})
    trainer = DepthTrainer(cfg_of(d))
    batch = fixed_batch(trainer)
    before = batch_loss(trainer, batch)
    trainer.train()
    after = batch_loss(trainer, batch)
    assert set(before) == {"silog", "photometric", "smoothness", "total"}
    expected = before["silog"] + before["photometric"] + 1e-3 * before["smoothness"]
    assert before["total"] == pytest.approx(expected, rel=1e-5)
    assert after["photometric"] < before["photometric"], (before, after)
    assert after["total"] < 0.85 * before["total"], (before, after)


def test_proxy_label_teacher_training_lowers_both_terms(tmp_path):
    d = tiny(tmp_path, steps=30, data={"augment": {"enabled": False}},
             proxy={"weight": 0.5, "max_disparity": 64})
    trainer = DepthTrainer(cfg_of(d))
    batch = fixed_batch(trainer)
    before = batch_loss(trainer, batch)
    trainer.train()
    after = batch_loss(trainer, batch)
    assert set(before) == {"silog", "proxy", "total"}
    assert before["total"] == pytest.approx(before["silog"] + 0.5 * before["proxy"], rel=1e-5)
    assert after["proxy"] < 0.85 * before["proxy"], (before, after)
    assert after["silog"] < before["silog"], (before, after)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/proxy" in row for row in logged if row.get("kind") == "train")


def test_student_training_lowers_the_distillation_loss(tmp_path, teacher_ckpt):
    d = tiny(tmp_path, stage="student", teacher_checkpoint=str(teacher_ckpt), steps=14)
    trainer = DepthTrainer(cfg_of(d))
    assert trainer.teacher is not None and not trainer.teacher.training
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    batch = fixed_batch(trainer)
    before = batch_loss(trainer, batch)
    trainer.train()
    after = batch_loss(trainer, batch)
    for term in ("silog", "umr", "umf", "focal"):
        assert before[term] > 0, term  # the full objective is active
    assert after["total"] < 0.8 * before["total"], (before, after)
    assert after["silog"] < before["silog"], (before, after)  # the student's own depth improved too
    # the teacher stayed frozen, the adapters were trained and are in the checkpoint
    assert state_equal(teacher_before, trainer.teacher.state_dict())
    ckpt = load_checkpoint(trainer.last_checkpoint)
    assert ckpt["stage"] == "student" and ckpt["adapters"].keys() == trainer.distill_loss.state_dict().keys()
    assert ckpt["meta"]["teacher"]["path"] == str(teacher_ckpt)


def test_a_baseline_student_needs_no_teacher_and_learns_the_same_without_one(tmp_path, teacher_ckpt):
    """The baseline uses GT only, so it can train before (or beside) the teacher; given a teacher
    checkpoint and unlabeled frames it ignores both, to the bit."""
    runs = {}
    unlabeled = {"unlabeled": {"batch_size": 2, "frames": 5, "first_index": 100}}
    for name, teacher, data in (("with", str(teacher_ckpt), unlabeled), ("without", None, {})):
        d = tiny(tmp_path, name, stage="student", teacher_checkpoint=teacher, distill={"mode": "baseline"},
                 data=data)  # fmt: skip
        trainer = DepthTrainer(cfg_of(d))
        assert trainer.teacher is None and trainer.unlabeled_set is None
        assert len(trainer.distill_loss.state_dict()) == 0  # no adapters
        trainer.train()
        runs[name] = load_checkpoint(trainer.last_checkpoint)
        assert runs[name]["meta"]["teacher"] is None
    assert state_equal(runs["with"]["model"], runs["without"]["model"])
    metrics = [(tmp_path / n / "metrics.jsonl").read_text() for n in ("with", "without")]
    records = [[json.loads(line) for line in m.splitlines()] for m in metrics]
    losses = [[r["loss/total"] for r in rs if r["kind"] == "train"] for rs in records]
    assert losses[0] == losses[1] and len(losses[0]) == 3 and all(v > 0 for v in losses[0])


# ------------------------------------------------------------------------------------------ resume


class StopAfter(HookBase):
    """Simulates a killed run: raises once `iter` reaches `step` (after the checkpoint hook ran)."""

    def __init__(self, step: int):
        self.step = step

    def after_step(self) -> None:
        if self.trainer.iter == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, stage, teacher_ckpt):
    # 12 frames / batch 4 = 3 batches per epoch: 8 steps cross two epoch boundaries, the kill at step 4
    # lands inside epoch 1; augmentation (flip, colour) is on, so its seeding must survive too.
    extra = {"teacher_checkpoint": str(teacher_ckpt)} if stage == "student" else {}
    d = tiny(tmp_path, "full", stage=stage, steps=8, deterministic=True, ckpt_every=4, val_every=4, **extra)
    full = DepthTrainer(cfg_of(d))
    full.train()

    d_int = {**d, "out_dir": str(tmp_path / "interrupted")}
    killed = DepthTrainer(cfg_of(d_int), extra_hooks=[StopAfter(4)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    assert killed.iter == 4
    ckpt = load_checkpoint(tmp_path / "interrupted" / "last.pt")
    assert (
        ckpt["step"] == 4 and ckpt["data_state"]["epoch"] == 1 and ckpt["data_state"]["batch_in_epoch"] == 1
    )

    torch.manual_seed(1234)  # resuming must not depend on the process' RNG state
    np.random.seed(99)
    resumed = DepthTrainer(cfg_of(d_int), resume=tmp_path / "interrupted" / "last.pt")
    assert resumed.iter == 4
    resumed.train()
    assert resumed.iter == 8
    assert state_equal(full.model.state_dict(), resumed.model.state_dict())
    if stage == "student":
        assert state_equal(full.distill_loss.state_dict(), resumed.distill_loss.state_dict())
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert a["focal_stats"] == b["focal_stats"]
    assert a["hooks"]["EvalHook"]["best_value"] == b["hooks"]["EvalHook"]["best_value"]
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])


def test_weight_average_is_the_ema_of_the_trajectory_and_resumes_exactly(tmp_path):
    """With `ema_decay` the checkpoint's `model` (what eval, export and init_from load) is the moving average
    of the weights after each step, `training_weights` the trajectory itself, which the average leaves
    unchanged; a killed and resumed run ends with the same average."""
    plain = tiny(tmp_path, "plain", steps=2, ckpt_every=1, deterministic=True)
    train(cfg_of(plain))
    w1 = load_checkpoint(tmp_path / "plain" / "ckpt_0000001.pt")["model"]
    w2 = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    averaged = {**plain, "out_dir": str(tmp_path / "ema"), "ema_decay": 0.25}
    train(cfg_of(averaged))
    ckpt = load_checkpoint(tmp_path / "ema" / "last.pt")
    assert state_equal(ckpt["training_weights"], w2) and ckpt["meta"]["ema_decay"] == 0.25
    moved = [k for k in w2 if w2[k].is_floating_point() and not torch.equal(w1[k], w2[k])]
    assert moved  # the second step changed weights: the average differs from both ends
    for key in moved:  # the first update copies, the second mixes: 0.25·w1 + 0.75·w2
        torch.testing.assert_close(ckpt["model"][key], 0.25 * w1[key] + 0.75 * w2[key])
    assert load_model(ckpt).state_dict().keys() == w2.keys()  # a plain DepthNet checkpoint to its readers

    d = tiny(tmp_path, "full", steps=6, ckpt_every=3, deterministic=True, ema_decay=0.5)
    train(cfg_of(d))
    d_int = {**d, "out_dir": str(tmp_path / "interrupted")}
    with pytest.raises(KeyboardInterrupt):
        DepthTrainer(cfg_of(d_int), extra_hooks=[StopAfter(3)]).train()
    train(cfg_of(d_int), resume=tmp_path / "interrupted" / "last.pt")
    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("full", "interrupted"))
    assert state_equal(a["model"], b["model"]) and state_equal(a["training_weights"], b["training_weights"])


def test_resume_refuses_another_stage_or_model(tmp_path, teacher_ckpt):
    d = tiny(tmp_path, stage="student", teacher_checkpoint=str(teacher_ckpt))
    with pytest.raises(ValueError, match="'teacher' checkpoint, this run trains the student"):
        DepthTrainer(cfg_of(d), resume=teacher_ckpt)
    other = tiny(tmp_path, model={"max_depth": 50.0})
    with pytest.raises(ValueError, match="model config differs"):
        DepthTrainer(cfg_of(other), resume=teacher_ckpt)


def test_init_from_starts_a_fresh_run_from_a_checkpoint_and_records_it(tmp_path, teacher_ckpt):
    d = tiny(tmp_path, "init", init_from=str(teacher_ckpt), steps=1)
    trainer = DepthTrainer(cfg_of(d))
    assert state_equal(trainer.model.state_dict(), load_checkpoint(teacher_ckpt)["model"])
    assert trainer.iter == 0  # weights only: step, optimiser and schedule start fresh
    # a student whose UEM gets no loss (baseline) is flagged untrained, one distilled with the UEM is not
    base = tiny(tmp_path, "base", stage="student", teacher_checkpoint=str(teacher_ckpt), steps=1,
                distill={"mode": "baseline"})
    train(cfg_of(base))
    base_ckpt = Path(base["out_dir"]) / "last.pt"
    assert load_checkpoint(base_ckpt)["meta"]["sigma_trained"] is False
    full = tiny(tmp_path, "full", stage="student", teacher_checkpoint=str(teacher_ckpt), steps=1,
                init_from=str(base_ckpt))
    meta = load_checkpoint(train(cfg_of(full))["last"])["meta"]
    assert meta["sigma_trained"] is True
    assert meta["init_from"] == {"path": str(base_ckpt), "git_commit": meta["init_from"]["git_commit"],
                                 "sigma_trained": False}


def test_init_from_refuses_another_stage_or_architecture(tmp_path, teacher_ckpt):
    d = tiny(tmp_path, stage="student", teacher_checkpoint=str(teacher_ckpt), init_from=str(teacher_ckpt))
    with pytest.raises(ValueError, match="init_from .*'teacher' checkpoint, this run trains the student"):
        DepthTrainer(cfg_of(d))
    other = tiny(tmp_path, init_from=str(teacher_ckpt), model={"backbone": "resnet18"})
    with pytest.raises(ValueError, match="model.backbone is None there and 'resnet18' here"):
        DepthTrainer(cfg_of(other))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        DepthTrainer(cfg_of(tiny(tmp_path, init_from=str(tmp_path / "missing.pt"))))


# ------------------------------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip_reproduces_outputs_and_records_metadata(tmp_path, teacher_ckpt):
    d = tiny(tmp_path, stage="student", teacher_checkpoint=str(teacher_ckpt), steps=2, val_every=1)
    trainer = DepthTrainer(cfg_of(d))
    trainer.train()
    ckpt = torch.load(trainer.last_checkpoint, weights_only=True)  # plain weights_only load works
    model = load_model(ckpt)
    x = torch.rand(2, 3, *SIZE)
    trainer.model.eval()
    with torch.no_grad():
        a, b = trainer.model(x), model(x)
    assert torch.equal(a.depth, b.depth) and torch.equal(a.log_var, b.log_var)
    meta = ckpt["meta"]
    fx = float(rig_intrinsics(tuple(SIZE))[0, 0])
    assert meta["focal_px"] == pytest.approx(fx, rel=1e-5)
    assert meta["focal_px_min"] == pytest.approx(fx, rel=1e-5) and meta["focal_px_max"] == pytest.approx(
        fx, rel=1e-5
    )
    assert ckpt["focal_stats"]["count"] == 2 * 4  # every training sample of 2 steps x batch 4
    assert meta["preset"] == "nano" and meta["input_size"] == SIZE and meta["max_depth"] == 80.0
    assert meta["versions"]["torch"] == str(torch.__version__)
    assert ckpt["config"] == to_dict(cfg_of(d))
    assert from_dict(TrainConfig, ckpt["config"]) == cfg_of(d)
    assert ckpt["step"] == 2 and ckpt["scheduler"]["last_epoch"] == 2
    # best.pt by abs_rel: validation ran at steps 1 and 2, best.pt holds the better one
    out = Path(d["out_dir"])
    vals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val_rows = [v for v in vals if v["kind"] == "val"]
    assert [v["step"] for v in val_rows] == [1, 2]
    best = min(val_rows, key=lambda v: v["abs_rel"])
    best_ckpt = load_checkpoint(out / "best.pt")
    assert best_ckpt["step"] == best["step"]
    assert best_ckpt["hooks"]["EvalHook"]["best_value"] == pytest.approx(best["abs_rel"])
    # dense metrics of the rig and the student's uncertainty metrics are logged
    assert {"dense_abs_rel", "ause_abs_rel", "aurg_rmse", "n_images"} <= set(val_rows[-1])
    train_rows = [v for v in vals if v["kind"] == "train"]
    assert {"loss/total", "loss/silog", "loss/umr", "lr"} <= set(train_rows[0])
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert yaml.safe_load((out / "config.yaml").read_text()) == to_dict(cfg_of(d))


def test_rng_state_round_trip_is_weights_only_safe(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = get_rng_state()
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    save_checkpoint(tmp_path / "c.pt", {"stage": "teacher", "model_config": {}, "model": {}, "rng": [state]})
    loaded = load_checkpoint(tmp_path / "c.pt")["rng"][0]
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(loaded)
    got = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_focal_stats_merge_and_meta():
    a, b = FocalStats(), FocalStats()
    a.update(torch.tensor([700.0, 710.0]))
    b.update(torch.tensor([720.0]))
    a.merge(b)
    assert a.meta() == {"focal_px": pytest.approx(710.0), "focal_px_min": 700.0, "focal_px_max": 720.0}
    assert FocalStats().meta()["focal_px"] is None


# ------------------------------------------------------------------------------------------ errors


def test_student_with_missing_teacher_fails_before_training(tmp_path):
    d = tiny(tmp_path, stage="student", teacher_checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="teacher checkpoint not found"):
        DepthTrainer(cfg_of(d))
    assert not Path(d["out_dir"]).exists()  # nothing was written


def test_student_with_a_non_teacher_checkpoint_fails_before_training(tmp_path, teacher_ckpt):
    student = train(
        cfg_of(tiny(tmp_path, "student", stage="student", teacher_checkpoint=str(teacher_ckpt), steps=1))
    )
    d = tiny(tmp_path, "s2", stage="student", teacher_checkpoint=student["last"])
    with pytest.raises(ValueError, match="must come from a teacher run"):
        DepthTrainer(cfg_of(d))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        DepthTrainer(cfg_of({**d, "teacher_checkpoint": str(junk)}))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not an adu_depth checkpoint"):
        DepthTrainer(cfg_of({**d, "teacher_checkpoint": str(foreign)}))
    other_size = tiny(
        tmp_path, "s3", stage="student", teacher_checkpoint=str(teacher_ckpt), model={"input_size": [96, 320]}
    )
    with pytest.raises(ValueError, match="teacher was built for input"):
        DepthTrainer(cfg_of(other_size))
    assert not (tmp_path / "s2").exists() and not (tmp_path / "s3").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stepz=3", "unknown config key"),
        ("optim.lrr=1", r"unknown config key\(s\) \['lrr'\] in 'optim'"),
        ("steps", "expected key=value"),
        ("steps=abc", "steps: expected an integer"),
        ("epochs=3", "exactly one of 'steps' and 'epochs'"),
        ("amp=fp8", "amp: expected one of"),
        ("data.kind=kitti", "data.root is required"),
        ("model.input_size=[64,200]", "multiples of 32"),
        ("optim.end_lr=1", "end_lr <= lr"),
        ("stage=student", "needs teacher_checkpoint"),
        ("data.augment.flip_prob=2", "flip_prob must be in"),
        ("best_metric=abs_rell", "best_metric 'abs_rell' is not a validation metric"),
        ("best_metric=ause_rmse", "the teacher has none"),
        ("optim.lr=.nan", r"optim.lr: expected a finite number, got nan"),
        ("optim.weight_decay=.inf", r"optim.weight_decay: expected a finite number, got inf"),
        ("ema_decay=1", r"ema_decay must be in \(0, 1\) or null, got 1.0"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, override, message):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path)))
    with pytest.raises(ValueError, match=message):
        load_train_config(path, [override])


def test_cli_reports_config_errors_in_one_line_and_trains(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path, steps=2)))
    assert cli_main(["train", "--config", str(path), "--set", "bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config key(s) ['bogus']" in err[0]
    assert cli_main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    out = tmp_path / "cli_out"
    assert cli_main(["train", "--config", str(path), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and Path(summary["last"]) == out / "last.pt"
    # a second fresh run into the same folder is refused; --resume of a finished run is a no-op
    assert cli_main(["train", "--config", str(path), "--out", str(out)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert cli_main(["train", "--resume", str(out / "last.pt"), "--set", "steps=3"]) == 0
    assert load_checkpoint(out / "last.pt")["step"] == 3  # config taken from the checkpoint, steps extended


def test_non_finite_loss_raises_with_step_and_terms(tmp_path):
    trainer = DepthTrainer(cfg_of(tiny(tmp_path)))

    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(*args)
            return {**out, "total": out["total"] * float("nan")}

    trainer.wrapped = Broken(trainer.objective)
    trainer.iter = 0
    with pytest.raises(FloatingPointError, match=r"non-finite at step 0: \{'silog': .*'total': nan"):
        trainer.train()


# ------------------------------------------------------------------------------------------ parts


def test_polynomial_lr_matches_newcrfs_formula():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=2e-5)
    sched = PolynomialLR(opt, total_steps=100, end_lr=2e-6, power=0.9)
    lrs = []
    for _ in range(101):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2e-5)
    assert lrs[50] == pytest.approx((2e-5 - 2e-6) * 0.5**0.9 + 2e-6)
    assert lrs[100] == pytest.approx(2e-6)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert "total_steps" not in sched.state_dict()
    warm = PolynomialLR(torch.optim.Adam([p], lr=1.0), total_steps=10, end_lr=0.0, power=1.0, warmup_steps=4)
    assert warm.get_last_lr()[0] == pytest.approx(0.25)


def test_sampler_order_depends_only_on_seed_and_epoch_and_shards_cover_the_data():
    n, world = 10, 3
    shards = [du.ResumableShardedSampler(n, rank=r, world_size=world, seed=7) for r in range(world)]
    for s in shards:
        s.set_epoch(2)
    items = [list(s) for s in shards]
    assert all(len(it) == 4 for it in items)  # ceil(10 / 3), padded by wrapping
    indices = [i for it in items for i, _, _ in it]
    assert set(indices) == set(range(n)) and len(indices) == 12
    again = du.ResumableShardedSampler(n, rank=1, world_size=world, seed=7)
    again.set_epoch(2)
    assert list(again) == items[1]
    again.set_epoch(3)
    assert [i for i, _, _ in again] != [i for i, _, _ in items[1]] or n < 3
    again.set_epoch(2, start=2)
    assert list(again) == items[1][2:] and len(again) == 2
    seeds = {s for it in items for _, _, s in it}
    assert len(seeds) == 12  # a distinct augmentation seed per (epoch, position)


def test_metric_direction():
    assert metric_mode("abs_rel") == "min" and metric_mode("dense_rmse") == "min"
    assert metric_mode("d1") == "max" and metric_mode("aurg_abs_rel") == "max"


def test_epoch_budget(tmp_path):
    trainer = DepthTrainer(cfg_of(tiny(tmp_path, steps=None, epochs=1)))
    assert trainer.max_iter == trainer.batches_per_epoch == 3  # 12 frames, batch 4, last batch dropped


# ------------------------------------------------------------------------------------------ datasets


def merge_tree(src: Path, dst: Path) -> None:
    """Move the files of `src` into `dst` (folders merged): one dataset root holding several splits."""
    for child in src.iterdir():
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            merge_tree(child, target)
        else:
            shutil.move(str(child), str(target))


def test_training_reads_kitti_trees_with_eigen_and_official_splits(tmp_path):
    rig = SyntheticRig(RigConfig(), tuple(SIZE))
    root = tmp_path / "kitti"
    write_kitti_tree(root, frames_for_split(rig, "train", 8), "train", none_every=4)  # 2 lines without GT
    write_kitti_tree(tmp_path / "kv", frames_for_split(rig, "val", 3), "val", none_every=0, official=True)
    merge_tree(tmp_path / "kv", root)
    data = {
        "kind": "kitti",
        "root": str(root),
        "gt_root": str(root / GT_DIRNAME),
        "eval_root": str(root),
        "train_split": str(root / "splits" / "eigen_train_files_with_gt.txt"),
        "val_split": str(root / "splits" / "kitti_official_val.txt"),
    }
    summary = train(cfg_of(tiny(tmp_path, "k", data=data, steps=2)))
    assert summary["steps"] == 2 and summary["val"]["n_images"] == 3
    # the same split as unlabeled frames for a student: all 8 stereo pairs, those without GT included
    unlabeled = from_dict(DataConfig, {**data, "unlabeled": {"batch_size": 2, "split": data["train_split"]}})
    frames = build_unlabeled_dataset(unlabeled, cfg_of(tiny(tmp_path)).model)
    assert len(frames) == 8 and frames[0]["right"].shape == frames[0]["left"].shape
    assert summary["focal_px"] == pytest.approx(float(rig_intrinsics(tuple(SIZE))[0, 0]), rel=1e-4)
    missing = {**data, "val_split": str(root / "splits" / "nope.txt")}
    with pytest.raises(FileNotFoundError, match="data.val_split not found"):
        DepthTrainer(cfg_of(tiny(tmp_path, "k2", data=missing)))
    with pytest.raises(FileNotFoundError, match="KITTI data_path is not a folder"):
        DepthTrainer(cfg_of(tiny(tmp_path, "k3", data={**data, "root": str(tmp_path / "nowhere")})))
    assert not (tmp_path / "k2").exists() and not (tmp_path / "k3").exists()


def test_training_reads_a_drivingstereo_tree(tmp_path):
    rig = SyntheticRig(RigConfig(), tuple(SIZE))
    root = tmp_path / "ds"
    write_drivingstereo_tree(root, frames_for_split(rig, "train", 8), "train")
    write_drivingstereo_tree(tmp_path / "dt", frames_for_split(rig, "test", 3), "test")
    merge_tree(tmp_path / "dt", root)
    data = {"kind": "drivingstereo", "root": str(root), "eval_size": SIZE}
    summary = train(cfg_of(tiny(tmp_path, "d", data=data, steps=2)))
    assert summary["steps"] == 2 and summary["val"]["n_images"] == 3  # validation reads the test folder
    with pytest.raises(ValueError, match="data.eval_size is required for DrivingStereo"):
        cfg_of(tiny(tmp_path, "d2", data={"kind": "drivingstereo", "root": str(root)}))


# ------------------------------------------------------------------------------------------ ablation


def test_ablation_trains_the_teacher_and_rows_and_writes_the_table(tmp_path, capsys):
    teacher_path = tmp_path / "teacher" / "last.pt"
    student = cfg_of(tiny(tmp_path, "unused", stage="student", teacher_checkpoint=str(teacher_path), steps=2))
    with pytest.raises(FileNotFoundError, match="--train-teacher"):
        run_ablation(student, tmp_path / "abl", rows=["full"])
    teacher = cfg_of(tiny(tmp_path, "t", steps=3))
    result = run_ablation(student, tmp_path / "abl", rows=["Baseline", "full"], teacher_cfg=teacher, seeds=2)
    assert teacher_path.is_file() and load_checkpoint(teacher_path)["step"] == 3
    assert list(result["rows"]) == ["Teacher", "Baseline", "Full"]
    for name, row in result["rows"].items():
        assert row["sparse"]["n_images"] == 3 and math.isfinite(row["sparse"]["abs_rel"]), name
        assert math.isfinite(row["dense"]["abs_rel"]), name
    assert result["rows"]["Baseline"]["distill"]["mode"] == "baseline"
    full = result["rows"]["Full"]
    assert full["distill"]["mode"] == "full" and [r["steps"] for r in full["runs"]] == [2, 2]
    # two seeds per row: the row is their mean, the spread their sample std
    assert full["seeds"] == [student.seed, student.seed + 1]
    per_seed = [r["sparse"]["abs_rel"] for r in full["runs"]]
    assert per_seed[0] != per_seed[1]  # different seeds really train different students
    assert full["sparse"]["abs_rel"] == pytest.approx(sum(per_seed) / 2)
    assert full["sparse_std"]["abs_rel"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / math.sqrt(2))
    assert result["rows"]["Teacher"]["sparse_std"] == {}
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert f"{full['sparse']['abs_rel']:.3f} ± {full['sparse_std']['abs_rel']:.3f}" in md
    assert "mean ± std over 2 seeds" in md
    assert "| Teacher |" in md and "| Baseline |" in md and "| Full |" in md and "Dense GT" in md
    assert "Sq Rel" in md and "Abs Rel" in md and "RMSE" in md
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert saved["rows"]["Full"]["sparse"]["abs_rel"] == pytest.approx(
        result["rows"]["Full"]["sparse"]["abs_rel"]
    )
    # a second run reuses the finished rows (same config) and gives the same numbers
    last = tmp_path / "abl" / "full" / f"seed{student.seed}" / "last.pt"
    stamp = last.stat().st_mtime_ns
    again = run_ablation(student, tmp_path / "abl", rows=["full"], seeds=2)
    assert last.stat().st_mtime_ns == stamp
    assert again["rows"]["Full"]["sparse"] == result["rows"]["Full"]["sparse"]


def test_ablation_test_rows_score_exactly_as_adu_depth_eval(tmp_path):
    """Table 4's scoring (the in-memory estimator through evaluate.Evaluator, batched) and `adu-depth eval`
    of the same checkpoints on the same KITTI frames give the same numbers — the network input (64x160)
    differs from the frames (64x192) and f_train from their focal, so resize and focal correction count."""
    rig = SyntheticRig(RigConfig(), tuple(SIZE))
    root = tmp_path / "kitti"
    write_kitti_tree(root, frames_for_split(rig, "test", 5), "test", none_every=4)  # frame 3: no GT
    split = root / "splits" / "eigen_test_files_with_gt.txt"
    data = {"kind": "kitti", "root": str(root), "gt_root": str(root / GT_DIRNAME), "kb_crop": False,
            "train_split": str(split), "test_split": str(split)}  # fmt: skip
    cfg = cfg_of(tiny(tmp_path, stage="student", teacher_checkpoint="x.pt", data=data,
                      val={"crop": "garg", "batch_size": 1}))  # fmt: skip
    batched = cfg.replace(val=dataclasses.replace(cfg.val, batch_size=3))
    dataset = build_dataset(cfg.data, "test", cfg.model)
    f_train = 0.8 * float(rig_intrinsics(tuple(SIZE))[0, 0])
    for stage in ("student", "teacher"):
        torch.manual_seed(1)
        model_cfg = ModelConfig(preset="nano", input_size=(64, 160), max_depth=80.0)
        path = tmp_path / f"{stage}.pt"
        save_checkpoint(path, {"stage": stage, "model_config": to_dict(model_cfg),
                               "model": build_model(model_cfg, stage).state_dict(),
                               "meta": {"focal_px": f_train}})  # fmt: skip
        _, sparse, dense = score_checkpoint(path, dataset, cfg, torch.device("cpu"))
        _, sparse3, dense3 = score_checkpoint(path, dataset, batched, torch.device("cpu"))
        out = tmp_path / f"{stage}.json"
        cmd = ["eval", "--model", str(path), "--dataset", "kitti", "--data-path", str(root), "--split"]
        assert cli_main([*cmd, str(split), "--crop", "garg", "--device", "cpu", "--json", str(out)]) == 0
        report = json.loads(out.read_text())
        assert sparse["n_images"] == report["n_images"] == 4 and report["n_skipped"] == 1
        assert dense["n_images"] == report["dense_n_images"] == 4
        assert ("ause_abs_rel" in sparse) == (stage == "student")
        for key, value in sparse.items():
            assert value == pytest.approx(report[key], rel=1e-12, abs=1e-12), (stage, key)
            assert sparse3[key] == pytest.approx(value, rel=1e-4, abs=1e-4), (stage, key)  # batched: noise
        for key, value in dense.items():
            assert value == pytest.approx(report["dense_" + key], rel=1e-12, abs=1e-12), (stage, key)
            assert dense3[key] == pytest.approx(value, rel=1e-4, abs=1e-4), (stage, key)


def test_ablation_rows_and_config_errors(tmp_path):
    assert parse_rows(None) == ["baseline", "no_focal", "no_uem", "no_attention", "full"]
    assert parse_rows(["Full", "-focal", "no_uem,Baseline"]) == ["baseline", "no_focal", "no_uem", "full"]
    with pytest.raises(ValueError, match="unknown ablation row 'fancy'"):
        parse_rows(["fancy"])
    assert parse_rows(None, unlabeled=True)[-1] == "full_unlabeled"
    with pytest.raises(ValueError, match="full_unlabeled needs unlabeled frames"):
        parse_rows(["unlabeled"])
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        student = cfg_of(tiny(tmp_path, stage="student", teacher_checkpoint="x.pt"))
        run_ablation(student, tmp_path / "a", seeds=0)
    with pytest.raises(ValueError, match="needs a student config"):
        run_ablation(cfg_of(tiny(tmp_path)), tmp_path / "a")
    no_test = cfg_of(tiny(tmp_path, stage="student", teacher_checkpoint="x.pt", data={"test_frames": 0}))
    with pytest.raises(ValueError, match="test_frames must be > 0"):
        run_ablation(no_test, tmp_path / "a")


# ------------------------------------------------------------------------------------ unlabeled frames


def test_unlabeled_frames_join_the_distillation_batch_without_gt(tmp_path):
    teacher = train(cfg_of(tiny(tmp_path, "t", steps=1)))["last"]
    cfg = cfg_of(tiny(tmp_path, "s", stage="student", teacher_checkpoint=str(teacher), steps=2,
                      data={"unlabeled": {"batch_size": 2, "frames": 5, "first_index": 100}}))
    trainer = DepthTrainer(cfg)
    try:
        batch = trainer._next_batch()
        merged, gt = trainer._with_unlabeled(batch, step=7)
        assert merged["left"].shape[0] == merged["right"].shape[0] == gt.shape[0] == 4 + 2
        assert torch.equal(merged["left"][:4], batch["left"]) and torch.equal(gt[:4], batch["depth"])
        assert (gt[4:] == 0).all()  # rendered frames have GT, but L_b must never see it
        again, _ = trainer._with_unlabeled(batch, step=7)
        other, _ = trainer._with_unlabeled(batch, step=8)
        assert torch.equal(again["left"], merged["left"])  # a function of the step: resume draws the same
        assert not torch.equal(other["left"][4:], merged["left"][4:])
        # the unlabeled frames are the rig's train frames from first_index on, never a labeled one
        seeds = {trainer.unlabeled_set.seed_of(i) for i in range(len(trainer.unlabeled_set))}
        assert min(seeds) == 100 and not seeds & {trainer.train_set.seed_of(i) for i in range(12)}
        # L_b ignores them: changing the student's prediction there leaves SILog unchanged
        loss = trainer.distill_loss
        with torch.no_grad():
            out = trainer.model(merged["left"])
        t_out = trainer.teacher(torch.cat([merged["left"], merged["right"]], 1))
        base = loss(out, t_out, gt, step=10**6)
        out.depth = torch.cat([out.depth[:4], out.depth[4:] * 3.0])
        moved = loss(out, t_out, gt, step=10**6)
        assert float(moved["silog"]) == pytest.approx(float(base["silog"]))
        assert float(moved["umr"]) != pytest.approx(float(base["umr"]))  # distillation does see them
    finally:
        trainer.close()
    summary = train(cfg)
    assert summary["steps"] == 2


def test_unlabeled_frame_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="data.unlabeled is for the student stage"):
        cfg_of(tiny(tmp_path, data={"unlabeled": {"batch_size": 2, "frames": 5}}))
    student = {"stage": "student", "teacher_checkpoint": "t.pt"}
    with pytest.raises(ValueError, match="first_index 3 overlaps the labeled training frames"):
        overlap = {"batch_size": 2, "frames": 5, "first_index": 3}
        cfg_of(tiny(tmp_path, **student, data={"unlabeled": overlap}))
    with pytest.raises(ValueError, match="data.unlabeled.frames must be > 0"):
        cfg_of(tiny(tmp_path, **student, data={"unlabeled": {"batch_size": 2}}))
    with pytest.raises(ValueError, match="data.unlabeled.split is required"):
        kitti = DataConfig(kind="kitti", root="r", train_split="s", unlabeled=UnlabeledConfig(batch_size=2))
        kitti.validate()


# ------------------------------------------------------------------------------------------ after a kill


def test_resume_after_a_kill_cleans_temps_and_metrics_and_keeps_file_modes(tmp_path):
    """A kill -9 after step 4's checkpoint: steps 5..6 are in metrics.jsonl but not in any checkpoint, and a
    `best.pt` write was cut off. The resumed run removes the temp file, drops the records after step 4 (it
    writes them again), and every checkpoint has the usual file mode."""
    import os
    import stat

    d = tiny(tmp_path, "run", steps=6, ckpt_every=4, val_every=2, log_every=1)
    out = tmp_path / "run"
    train(cfg_of(d))
    first = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in first) == 6
    # what the kill leaves: last.pt at step 4 (a copy of ckpt_0000004.pt), a torn record, a best.pt temp
    shutil.copyfile(out / "ckpt_0000004.pt", out / "last.pt")
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 7, "ki')
    stale = out / ".best.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(cfg_of(d), resume=out / "last.pt")
    assert not stale.exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["kind"]) for r in records]
    assert len(keys) == len(set(keys)), "a record is duplicated after the resume"
    assert sorted(keys) == sorted((r["step"], r["kind"]) for r in first)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("last.pt", "best.pt", "ckpt_0000004.pt"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name


def test_train_full_disk_and_bad_out_are_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import adu_depth_core.fileio as ck

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path, steps=2)))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli_main(["train", "--config", str(path), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"adu-depth train: error: --out {a_file} is a file; expected a folder"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", full)
    out = tmp_path / "run"
    assert cli_main(["train", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"adu-depth train: error: {out / 'best.pt'}: no space left on the device; free space or "
                   "choose another output location"]  # fmt: skip
    assert not [p for p in out.iterdir() if p.suffix in (".pt", ".tmp")]
