"""The paper's Table 4: train every distillation ablation row with the same budget against one teacher,
evaluate each on the held-out test split and print the table (plus the teacher as a reference row).

Every row is the student recipe with only `distill` changed (`distill.ablation_configs`): same data, same
steps, and the same `seeds` seeds (seed s gives every row the same initial student weights and data
order), so a row's mean ± std over seeds is its result and the std is the seed-to-seed spread a difference
has to beat. When the recipe has unlabeled frames (`data.unlabeled`), the five paper rows train without
them and an extra row, "Full + unlabeled frames", trains the full scheme with them. Runs whose `last.pt` is
already complete are reused; a run that stopped part-way is resumed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from adu_depth_core.checkpoint import load_checkpoint
from adu_depth_core.config import to_dict
from adu_depth_core.data.factory import build_dataset, has_split
from adu_depth_core.distill import ablation_configs
from adu_depth_core.evaluation import format_table, mean_std
from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.models import load_model
from adu_depth_core.runtime import DepthEstimator
from adu_depth_core.train import distributed as du
from adu_depth_core.train.config import TrainConfig
from adu_depth_core.train.run import train
from adu_depth_core.train.validation import evaluate_model

log = logging.getLogger(__name__)

# ablation_configs() keys → the paper's row labels (Table 4), in the paper's order
ROW_LABELS = {
    "baseline": "Baseline",
    "no_focal": "−Focal",
    "no_uem": "−UEM",
    "no_attention": "−Attention",
    "full": "Full",
    "full_unlabeled": "Full + unlabeled frames",
}
PAPER_ROWS = ("baseline", "no_focal", "no_uem", "no_attention", "full")
_ALIASES = {
    **{k: k for k in ROW_LABELS},
    **{v.lower(): k for k, v in ROW_LABELS.items()},
    "-focal": "no_focal",
    "-uem": "no_uem",
    "-attention": "no_attention",
    "full-setting": "full",
    "full_setting": "full",
    "unlabeled": "full_unlabeled",
}


def parse_rows(rows: list[str] | tuple[str, ...] | None, unlabeled: bool = False) -> list[str]:
    """Row keys in table order from user spellings (`full`, `Full`, `-Focal`, `no_focal`, ...); the default
    is the paper's five rows, plus `full_unlabeled` when the recipe has unlabeled frames."""
    if not rows:
        return list(PAPER_ROWS) + (["full_unlabeled"] if unlabeled else [])
    wanted = set()
    for r in rows:
        for part in str(r).split(","):
            key = _ALIASES.get(part.strip().lower())
            if key is None:
                raise ValueError(f"unknown ablation row {part!r}; choose from {list(ROW_LABELS)}")
            wanted.add(key)
    if "full_unlabeled" in wanted and not unlabeled:
        raise ValueError("ablation row full_unlabeled needs unlabeled frames: set data.unlabeled.batch_size "
                         "and its frames / split / bags in the recipe")
    return [k for k in ROW_LABELS if k in wanted]


def row_configs(cfg: TrainConfig, keys: list[str], out: Path, seeds: int) -> dict[str, list[TrainConfig]]:
    """The training config of every (row, seed): the recipe with the row's `distill`, its seed and folder;
    unlabeled frames only in the `full_unlabeled` row."""
    variants = ablation_configs(cfg.distill)
    off = dataclasses.replace(cfg.data.unlabeled, batch_size=0)
    no_unlabeled = dataclasses.replace(cfg.data, unlabeled=off)
    configs: dict[str, list[TrainConfig]] = {}
    for key in keys:
        if key == "full_unlabeled":
            distill, data = variants["full"], cfg.data
        else:
            distill, data = variants[key], no_unlabeled
        seeds_of_row = [cfg.seed + k for k in range(seeds)]
        configs[key] = [cfg.replace(distill=distill, data=data, seed=s, out_dir=str(out / key / f"seed{s}"))
                        for s in seeds_of_row]
    return configs


def _finished(path: Path, cfg_dict: dict[str, Any]) -> bool:
    """Whether `path` is the last checkpoint of a complete run of exactly this config (so it is reused)."""
    if not path.is_file():
        return False
    try:
        ckpt = load_checkpoint(path)
    except ValueError:
        return False
    saved = dict(ckpt.get("config", {}))
    mine = dict(cfg_dict)
    for d in (saved, mine):
        d.pop("out_dir", None)
        d.pop("progress", None)
    total = ckpt.get("meta", {}).get("total_steps")
    return total is not None and ckpt.get("step") == total and saved == mine


def _split_metrics(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    sparse = {k: v for k, v in metrics.items() if not k.startswith("dense_")}
    dense = {k[len("dense_") :]: v for k, v in metrics.items() if k.startswith("dense_")}
    return sparse, dense


def score_checkpoint(
    path: Path, dataset: Any, cfg: TrainConfig, device: torch.device
) -> tuple[dict[str, Any], dict[str, float], dict[str, float]]:
    """A row's checkpoint, and its sparse and dense metrics on `dataset` — `adu-depth eval`'s loop and
    estimator (policy resize, focal correction by the checkpoint's `meta.focal_px`), `cfg.val`'s scoring."""
    ckpt = load_checkpoint(path)
    model = load_model(ckpt).to(device)
    estimator = DepthEstimator.from_model(model, (ckpt.get("meta") or {}).get("focal_px"), name=str(path))
    metrics, _ = evaluate_model(estimator, dataset, cfg)
    sparse, dense = _split_metrics(metrics)
    return ckpt, sparse, dense


def run_ablation(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    rows: list[str] | tuple[str, ...] | None = None,
    teacher_cfg: TrainConfig | None = None,
    eval_split: str = "test",
    seeds: int = 3,
) -> dict[str, Any]:
    """Train and evaluate the ablation rows; returns (and writes `ablation.json` / `ablation.md`) the results.

    Args:
        cfg: a student config; its `distill` is the base the rows are derived from.
        out_dir: one folder per row (`<out>/<row>/`), plus `ablation.json` and `ablation.md`.
        rows: subset of rows (default all five, in the paper's order).
        teacher_cfg: a teacher config, trained to `cfg.teacher_checkpoint` first when that file does not
            exist (None: the checkpoint must exist).
        eval_split: the split every row is evaluated on ("test": held-out seeds of the synthetic rig).
        seeds: runs per row, with seeds cfg.seed … cfg.seed + seeds − 1; rows report mean ± std.
    """
    if cfg.stage != "student":
        raise ValueError(f"ablate needs a student config (stage: student), got stage {cfg.stage!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer (runs per row), got {seeds!r}")
    keys = parse_rows(rows, cfg.data.unlabeled.enabled)
    out = Path(out_dir)
    teacher_path = Path(cfg.teacher_checkpoint or "")
    # --- user errors before any training
    if not has_split(cfg.data, eval_split):
        what = (
            f"data.{eval_split}_frames must be > 0"
            if cfg.data.kind == "synthetic"
            else (f"data.{eval_split}_split is required")
        )
        raise ValueError(f"{what}: every row is evaluated on the {eval_split} split")
    if not teacher_path.is_file():
        if teacher_cfg is None:
            raise FileNotFoundError(
                f"teacher checkpoint not found: {teacher_path}; train it first or pass --train-teacher"
            )
        if teacher_cfg.stage != "teacher":
            raise ValueError(f"the teacher config has stage {teacher_cfg.stage!r}, expected 'teacher'")
        if teacher_path.name != "last.pt":
            raise ValueError(
                "--train-teacher writes <out_dir>/last.pt; "
                f"teacher_checkpoint {teacher_path} must end in last.pt"
            )

    dist_info = du.setup(cfg.device)
    try:
        if not teacher_path.is_file():
            assert teacher_cfg is not None
            tcfg = dataclasses.replace(teacher_cfg, out_dir=str(teacher_path.parent))
            log.info("training the teacher into %s", tcfg.out_dir)
            resume = teacher_path.parent / "last.pt"
            train(tcfg, dist_info=dist_info, resume=resume if resume.is_file() else None)

        row_ckpts: dict[str, list[Path]] = {}
        for key, run_cfgs in row_configs(cfg, keys, out, seeds).items():
            for run_cfg in run_cfgs:
                last = Path(run_cfg.out_dir) / "last.pt"
                what = f"row {ROW_LABELS[key]}, seed {run_cfg.seed}"
                if _finished(last, to_dict(run_cfg)):
                    log.info("%s: reusing the finished run in %s", what, last.parent)
                else:
                    resume = last if last.is_file() else None
                    log.info("%s: training into %s%s", what, last.parent, " (resuming)" if resume else "")
                    train(run_cfg, dist_info=dist_info, resume=resume, overwrite=resume is None)
                row_ckpts.setdefault(key, []).append(last)

        result: dict[str, Any] = {}
        if dist_info.is_main:
            result = _evaluate_rows(cfg, teacher_path, row_ckpts, out, eval_split, dist_info.device)
        du.barrier()
        return result
    finally:
        du.cleanup()


def _evaluate_rows(
    cfg: TrainConfig,
    teacher_path: Path,
    row_ckpts: dict[str, list[Path]],
    out: Path,
    split: str,
    device: torch.device,
) -> dict[str, Any]:
    dataset = build_dataset(cfg.data, split, cfg.model)
    entries: dict[str, dict[str, Any]] = {}
    rows = [("Teacher", [teacher_path])] + [(ROW_LABELS[k], paths) for k, paths in row_ckpts.items()]
    for label, paths in rows:
        runs = []
        for path in paths:
            ckpt, sparse, dense = score_checkpoint(path, dataset, cfg, device)
            runs.append({"checkpoint": str(path), "seed": ckpt.get("config", {}).get("seed"),
                         "steps": ckpt.get("step"), "sparse": sparse, "dense": dense})
        entry: dict[str, Any] = {
            "distill": ckpt.get("config", {}).get("distill") if label != "Teacher" else None,
            "seeds": [r["seed"] for r in runs],
            "runs": runs,
        }
        for gt in ("sparse", "dense"):
            entry[gt], entry[f"{gt}_std"] = mean_std([r[gt] for r in runs]) if runs[0][gt] else ({}, {})
        entries[label] = entry
        log.info(
            "%s: abs_rel %.4f (sparse)%s over %d run(s)",
            label,
            entry["sparse"].get("abs_rel", float("nan")),
            f", {entry['dense']['abs_rel']:.4f} (dense)" if "abs_rel" in entry["dense"] else "",
            len(runs),
        )

    n_images = int(next(iter(entries.values()))["sparse"].get("n_images", 0))
    where = f"{cfg.data.kind} {split} split, {n_images} images"
    budget = f"{cfg.steps} steps" if cfg.steps is not None else f"{cfg.epochs} epochs"
    n_seeds = max(len(p) for p in row_ckpts.values()) if row_ckpts else 1
    if n_seeds > 1:
        budget += f", mean ± std over {n_seeds} seeds (the teacher: one run)"
    tables = [
        "### Sparse GT (LiDAR-like)\n",
        format_table(
            {k: v["sparse"] for k, v in entries.items()},
            spread={k: v["sparse_std"] for k, v in entries.items()},
            crop=cfg.val.crop,
            max_depth=cfg.eval_max_depth,
            caption=f"Table 4 layout; {where}; sparse GT; every student row trained {budget}; "
            f"crop {cfg.val.crop}; depth cap {cfg.eval_max_depth:g} m.",
        ),
    ]
    if any(v["dense"] for v in entries.values()):
        tables += [
            "\n### Dense GT\n",
            format_table(
                {k: v["dense"] for k, v in entries.items()},
                spread={k: v["dense_std"] for k, v in entries.items()},
                crop=cfg.val.crop,
                max_depth=cfg.eval_max_depth,
                caption=f"Table 4 layout; {where}; dense GT (every pixel); "
                f"every student row trained {budget}.",
            ),
        ]
    markdown = "".join(tables)
    result = {
        "split": split,
        "dataset": cfg.data.kind,
        "n_images": n_images,
        "budget": budget,
        "rows": entries,
        "table_markdown": markdown,
        "config": to_dict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "ablation.json", json.dumps(_clean(result), indent=2).encode())
    atomic_write_bytes(out / "ablation.md", markdown.encode())
    return result


def _clean(value: Any) -> Any:
    """Standard JSON: non-finite floats become null, other objects their string."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
