"""`adu-depth ablate`: the paper's Table 4 — train the distillation ablation rows with equal budgets
against one teacher, evaluate each on the held-out test split, print the table and write it as JSON.

    adu-depth ablate --config training/configs/synthetic_student.yaml --train-teacher --out runs/ablation
    adu-depth ablate --config ... --rows baseline full --set steps=400
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Train the rows of the paper's Table 4 with equal budgets and print the table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from adu_depth_core.commands.train import add_overrides

    parser.add_argument("--config", required=True, help="student recipe (stage: student)")
    add_overrides(
        parser,
        "--set",
        "overrides",
        "override student config keys (every row gets them), e.g. --set steps=400",
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <out_dir>/../ablation)")
    parser.add_argument(
        "--rows",
        nargs="+",
        metavar="ROW",
        help="rows to train: baseline no_focal no_uem no_attention full full_unlabeled (default: the paper's "
        "five in its order, plus full_unlabeled when the recipe has data.unlabeled frames)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, metavar="N",
        help="runs per row, seeds seed … seed+N−1; the table shows mean ± std (default: 3)",
    )
    parser.add_argument(
        "--train-teacher",
        action="store_true",
        help="train the teacher first when the student config's teacher_checkpoint does not exist",
    )
    parser.add_argument(
        "--teacher-config",
        metavar="YAML",
        help="teacher recipe for --train-teacher (default: the student recipe's name with student→teacher)",
    )
    add_overrides(
        parser, "--teacher-set", "teacher_overrides", "override teacher config keys for --train-teacher"
    )
    parser.add_argument(
        "--split", default="test", choices=("test", "val"), help="evaluation split (default: test)"
    )


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.config import load_config
    from adu_depth_core.paths import check_output_dir
    from adu_depth_core.train.ablation import parse_rows, run_ablation
    from adu_depth_core.train.config import TrainConfig

    cfg = load_config(TrainConfig, args.config, list(args.overrides))
    parse_rows(args.rows, cfg.data.unlabeled.enabled)  # bad row names fail before anything else
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    teacher_cfg = None
    if args.train_teacher and not Path(cfg.teacher_checkpoint or "").is_file():
        tpath = args.teacher_config
        if tpath is None:
            p = Path(args.config)
            if "student" not in p.name:
                raise ValueError(
                    "cannot guess the teacher recipe from the student recipe's name; pass --teacher-config"
                )
            tpath = str(p.with_name(p.name.replace("student", "teacher")))
        teacher_cfg = load_config(TrainConfig, tpath, list(args.teacher_overrides))
    out = Path(args.out) if args.out else Path(cfg.out_dir).parent / "ablation"
    check_output_dir(out, "--out", overwrite=True)  # rows already trained there are reused
    result = run_ablation(cfg, out, rows=args.rows, teacher_cfg=teacher_cfg, eval_split=args.split,
                          seeds=args.seeds)
    if result:
        print(result["table_markdown"])
        print(f"written: {out / 'ablation.json'}, {out / 'ablation.md'}")
    return 0
