"""`adu-depth demo`: the whole system end to end on the synthetic stereo rig, on one CPU.

Stages (each leaves its outputs in the work folder; a re-run skips finished stages and resumes an
interrupted training from its `last.pt`):

1. data      render the held-out test frames as a KITTI tree and as a rosbag2 (same seeds)
2. train     the stereo teacher (`training/configs/synthetic_teacher.yaml`) and, beside it, the baseline
             student (`synthetic_student.yaml` with `distill.mode=baseline`), which needs no teacher;
             then the monocular student distilled from the frozen teacher (`synthetic_student.yaml`)
3. evaluate  teacher, baseline and student on the KITTI tree (Table 1 columns + AUSE/AURG), and OpenCV
             SGBM on the same frames as an untrained stereo reference
4. seeds     with `seeds` > 1: both students again with seeds 1 … N−1 against the same frozen teacher,
             two at a time, scored the same way, so the report gives mean ± std (the seed-to-seed spread)
5. export    the student to ONNX, checked against PyTorch in ONNX Runtime
6. bag_eval  the ONNX student on the test bag (`bag-eval`), writing an output bag with depth topics,
             and the same ONNX model on the KITTI tree, to show both paths agree
7. report    `report.md`, comparison panels and training curves

Independent trainings run side by side, one process and one thread each (`train.side_by_side`): on 2
cores that finishes sooner than one after the other at 2 threads. A run keeps its thread count from start
to end, so a re-run gives the same numbers.

Training frames are rendered in memory from the rig's train seed range (a pure function of the seed, so
identical to writing them out and reading them back); validation uses the val seeds, tests the test seeds.

Each stage calls the library with typed specs, as the commands do (`data.rig_export`, `train.run.train`,
`eval_run`, `runtime.export`, bag-eval's `evaluate_bag`); the report stage gathers what the others wrote
into a `demo_report.ReportInputs`, which `demo_report` only formats.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adu_depth_core.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from adu_depth_core.train.side_by_side import TrainJob

log = logging.getLogger("adu_depth.demo")

STAGES = ("data", "train", "evaluate", "seeds", "export", "bag_eval", "report")
MODELS = ("teacher", "baseline", "student")
STUDENTS = ("baseline", "student")  # what `seeds` retrains; the teacher is trained once, as in the paper
SEED_STAGES = ("seeds", "report")  # stages whose output depends on the number of seeds
# The demo's test frames: indices 1000+ of the rig's test split (seeds 2001000+), a range that no recipe,
# budget or ablation choice in this project was ever scored on (those used test indices 0-59).
TEST_FIRST_INDEX = 1000
N_PANEL_FRAMES = 3  # test frames in the report's comparison figure
TEACHER_RECIPE, STUDENT_RECIPE = "synthetic_teacher.yaml", "synthetic_student.yaml"  # training/configs


@dataclasses.dataclass(frozen=True)
class DemoBudget:
    """How much the demo renders and trains. `full` takes about 18 minutes on 2 CPU cores
    (docs/BENCHMARKS.md), `quick` about 3."""

    size: tuple[int, int]
    train_frames: int
    val_frames: int
    test_frames: int
    teacher_steps: int
    student_steps: int
    batch_size: int
    val_every: int
    unlabeled_batch: int  # unlabeled stereo frames per distilled student step (`data.unlabeled`)
    unlabeled_frames: int  # how many the distilled student draws them from

    def describe(self, n_test: int | None) -> str:
        """The budget as report.md states it."""
        from adu_depth_core.data.synthetic import split_seed

        h, w = self.size
        return (
            f"{h}x{w} images, {self.train_frames} training frames (rendered from the rig's\ntrain seeds), "
            f"{self.val_frames} validation frames, {n_test} held-out test frames (test seeds "
            f"{split_seed('test', TEST_FIRST_INDEX)}+),\nteacher {self.teacher_steps} steps, each student "
            f"{self.student_steps} steps, batch {self.batch_size} (the distilled one also "
            f"{self.unlabeled_batch} of\n{self.unlabeled_frames} unlabeled stereo frames per step)."
        )


# The teacher (nano + cost volume) gets more steps than the students (ghostnet_nano): it is trained once and
# then frozen, as the paper pre-trains it; budgets chosen on the validation seeds (docs/RESULTS.md §0: 800
# teacher steps and 2 of 800 unlabeled frames per step were level with 1,200 and 4 of 1,600).
BUDGETS = {
    "full": DemoBudget((96, 320), 400, 24, 40, 800, 600, 8, 300, 2, 800),
    "quick": DemoBudget((64, 192), 96, 8, 12, 200, 200, 4, 100, 2, 400),
}


def recipe_path(name: str) -> Path:
    """A recipe from `training/configs` (source checkout) or `share/adu_depth/training/configs` (install)."""
    import sys

    here = Path(__file__).resolve().parent.parent / "training" / "configs" / name
    installed = Path(sys.prefix) / "share" / "adu_depth" / "training" / "configs" / name
    for path in (here, installed):
        if path.is_file():
            return path
    raise FileNotFoundError(f"recipe {name} not found in {here.parent} or {installed.parent}")


class Demo:
    """Runs the stages in a work folder; `stages.json` records which ones finished."""

    def __init__(self, workdir: str | Path, budget: DemoBudget, seeds: int = 1):
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
        self.dir = Path(workdir)
        self.budget = budget
        self.seeds = seeds
        self.state_path = self.dir / "stages.json"
        self.state = self._read_state()

    # --- bookkeeping ---------------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {"budget": dataclasses.asdict(self.budget), "done": {}}
        state = json.loads(self.state_path.read_text())
        if state.get("budget") != json.loads(json.dumps(dataclasses.asdict(self.budget))):
            raise ValueError(
                f"{self.dir} holds a demo run with another budget ({state.get('budget')}); "
                "use a new --workdir or the same options as before"
            )
        return state

    def _mark_done(self, stage: str, seconds: float) -> None:
        self.state["done"][stage] = {
            "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M"),
            **({"seeds": self.seeds} if stage in SEED_STAGES else {}),
        }
        atomic_write_bytes(self.state_path, json.dumps(self.state, indent=2).encode())

    def _finished(self, stage: str) -> bool:
        """Done before, and (for `SEED_STAGES`) for the same number of seeds: a re-run with more seeds
        trains only the missing ones and rewrites the report."""
        entry = self.state["done"].get(stage)
        return entry is not None and (stage not in SEED_STAGES or entry.get("seeds", 1) == self.seeds)

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def run(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.state_path, json.dumps(self.state, indent=2).encode())
        steps: dict[str, Callable[[], None]] = {name: getattr(self, f"stage_{name}") for name in STAGES}
        start = time.perf_counter()
        for i, name in enumerate(STAGES, 1):
            if self._finished(name):
                log.info("[%d/%d] %s: already done, reusing it", i, len(STAGES), name)
                continue
            log.info("[%d/%d] %s ...", i, len(STAGES), name)
            t0 = time.perf_counter()
            steps[name]()
            dt = time.perf_counter() - t0
            self._mark_done(name, dt)
            log.info(
                "[%d/%d] %s done in %.0f s (total %.0f s)",
                i,
                len(STAGES),
                name,
                dt,
                time.perf_counter() - start,
            )
        report = self.path("report.md")
        log.info("demo finished: open %s", report)
        return report

    # --- stages --------------------------------------------------------------------------------------

    def stage_data(self) -> None:
        from adu_depth_core.data.rig_export import RigExport, write_rig_data

        b = self.budget
        outputs: dict[Literal["kitti", "rosbag"], str] = {"kitti": "test_kitti", "rosbag": "test_bag"}
        for fmt, out in outputs.items():
            target = self.path("data", out)
            if target.exists():  # a finished writer renames into place, so an existing one is complete
                continue
            # the vehicle rig (RigExport's default); every KITTI frame has GT (none_every=0)
            spec = RigExport(target, fmt, b.test_frames, b.size, TEST_FIRST_INDEX, "test", none_every=0)
            write_rig_data(spec)

    def _job(self, name: str, recipe: str, extra: list[str]) -> TrainJob:
        """The `TrainJob` of run `name` (a folder of the work dir) at this budget; it resumes from its
        `last.pt` where an interrupted demo left one."""
        from adu_depth_core.config import apply_overrides, from_dict, read_yaml
        from adu_depth_core.train.config import TrainConfig
        from adu_depth_core.train.side_by_side import TrainJob

        b = self.budget
        steps = b.teacher_steps if name == "teacher" else b.student_steps
        overrides = [
            f"model.input_size=[{b.size[0]}, {b.size[1]}]",
            f"data.train_frames={b.train_frames}",
            f"data.val_frames={b.val_frames}",
            f"data.test_frames={b.test_frames}",
            f"steps={steps}",
            f"batch_size={b.batch_size}",
            f"val_every={b.val_every}",
            f"ckpt_every={b.val_every}",
            f"out_dir={self.path(name)}",
            "num_workers=0",
            *extra,
        ]
        cfg = from_dict(TrainConfig, apply_overrides(read_yaml(recipe_path(recipe)), overrides))
        last = self.path(name, "last.pt")
        return TrainJob(cfg, resume=last if last.is_file() else None, overwrite=not last.is_file())

    def _train_side_by_side(self, jobs: list[TrainJob]) -> None:
        """Train the `jobs` (from `_job`) that have not reached their last step, side by side."""
        from adu_depth_core.checkpoint import load_checkpoint
        from adu_depth_core.train.side_by_side import train_side_by_side

        def trained(job: TrainJob) -> bool:
            return job.resume is not None and load_checkpoint(job.resume)["step"] >= job.cfg.steps

        train_side_by_side([job for job in jobs if not trained(job)])

    def checkpoint(self, name: str) -> Path:
        """The model a stage produced: best on the validation seeds, else the last one."""
        best = self.path(name, "best.pt")
        return best if best.is_file() else self.path(name, "last.pt")

    def _student_overrides(self, name: str) -> list[str]:
        """The recipe overrides of the distilled student or the baseline (`STUDENTS`)."""
        if name == "baseline":
            return ["distill.mode=baseline", "teacher_checkpoint=null"]  # GT only: trains beside the teacher
        # As the recipe (a quarter of the steps): SILog alone first, then distillation ramps in.
        steps = self.budget.student_steps
        return [
            f"teacher_checkpoint={self.checkpoint('teacher')}",
            f"distill.distill_start={steps // 4}",
            f"distill.warmup_steps={steps // 4}",
            f"data.unlabeled.batch_size={self.budget.unlabeled_batch}",
            f"data.unlabeled.frames={self.budget.unlabeled_frames}",
        ]

    def stage_train(self) -> None:
        self._train_side_by_side([
            self._job("teacher", TEACHER_RECIPE, []),
            self._job("baseline", STUDENT_RECIPE, self._student_overrides("baseline")),
        ])  # fmt: skip
        self._train_side_by_side([self._job("student", STUDENT_RECIPE, self._student_overrides("student"))])

    def seed_run(self, name: str, seed: int) -> str:
        """The work-folder name of student `name` trained with `seed` (seed 0 is the main run)."""
        return name if seed == 0 else f"seeds/{name}_seed{seed}"

    def stage_seeds(self) -> None:
        runs = [(name, seed) for name in reversed(STUDENTS) for seed in range(1, self.seeds)]  # longest first
        todo = [(n, s) for n, s in runs if not self.path("eval", f"{self.seed_run(n, s)}.json").is_file()]
        self._train_side_by_side([
            self._job(self.seed_run(n, s), STUDENT_RECIPE, [*self._student_overrides(n), f"seed={s}"])
            for n, s in todo
        ])  # fmt: skip
        for name, seed in todo:
            run = self.seed_run(name, seed)
            self._eval(self.checkpoint(run), self.path("eval", f"{run}.json"), None)

    @staticmethod
    def _scoring(model: Path, vis: Path | None = None):
        """The demo scores every network on the whole image (no crop), on the CPU backends."""
        from adu_depth_core.eval_run import ScoringSpec

        backend = "torch" if model.suffix == ".pt" else "onnxruntime"
        return ScoringSpec(model, backend=backend, crop="none", save_vis=vis, max_vis=4)

    def _test_kitti(self):
        from adu_depth_core.data.factory import EvalDataSpec

        return EvalDataSpec("kitti", root=self.path("data", "test_kitti"))

    def _eval(self, model: Path, json_out: Path, vis: Path | None) -> None:
        from adu_depth_core.eval_run import EvalSpec, evaluate_dataset, write_result_json

        result = evaluate_dataset(EvalSpec(self._scoring(model, vis), self._test_kitti()))
        write_result_json(json_out, result)
        log.info("  %s: %d images scored, %d skipped -> %s", model.name, result.n_images, result.n_skipped,
                 json_out)  # fmt: skip

    def stage_evaluate(self) -> None:
        for name in MODELS:
            self._eval(
                self.checkpoint(name), self.path("eval", f"{name}.json"), self.path("eval", f"vis_{name}")
            )
        self._eval_sgbm(self.path("eval", "sgbm.json"))

    def _eval_sgbm(self, json_out: Path) -> None:
        """OpenCV SGBM on the test frames (rendered from the same seeds as the KITTI tree), scored on the
        pixels it matches; `coverage` is the share of GT pixels that are."""
        from adu_depth_core.data.synthetic import RigConfig, SyntheticRig, frames_for_split
        from adu_depth_core.evaluation import MetricAccumulator, evaluate_image
        from adu_depth_core.evaluation.sgbm import sgbm_depth

        acc, matched, total = MetricAccumulator(), 0, 0
        rig = SyntheticRig(RigConfig(), self.budget.size)
        for f in frames_for_split(rig, "test", self.budget.test_frames, TEST_FIRST_INDEX):
            depth = sgbm_depth(f.left, f.right, f.K[0, 0], f.baseline, max_disparity=96)
            metrics = {}
            for prefix, gt in (("", f.lidar_depth), ("dense_", f.depth)):
                one = evaluate_image(depth, gt, max_depth=80.0, mask=depth > 0)  # where SGBM matched
                metrics.update({prefix + k: v for k, v in (one or {}).items()})
            matched += int(((f.lidar_depth > 0) & (depth > 0)).sum())
            total += int((f.lidar_depth > 0).sum())
            acc.add(metrics, f"seed-{f.seed:07d}")
        result = {**acc.mean(), "coverage": matched / max(total, 1), "n_images": acc.n_images}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(json_out, json.dumps(result, indent=2).encode())

    def stage_export(self) -> None:
        from adu_depth_core.runtime.export import export_onnx

        onnx = export_onnx(self.checkpoint("student"), self.path("student.onnx"), size=self.budget.size)
        log.info("  wrote %s (checked against PyTorch in ONNX Runtime)", onnx)

    def stage_bag_eval(self) -> None:
        from adu_depth_core.eval_bag import BagEvalSpec, evaluate_bag
        from adu_depth_core.eval_run import write_result_json

        onnx = self.path("student.onnx")
        out_bag = self.path("bag_eval", "student_depth_bag")
        if out_bag.exists():  # written atomically by a previous, interrupted run of this stage
            import shutil

            shutil.rmtree(out_bag)
        spec = BagEvalSpec(
            self._scoring(onnx),
            bag=self.path("data", "test_bag"),
            image_topic="/camera/left/image_raw",
            lidar_topic="/lidar/points",
            out_bag=out_bag,
        )
        result, extra = evaluate_bag(spec)
        write_result_json(self.path("bag_eval", "bag_eval.json"), result, extra)
        self._eval(onnx, self.path("bag_eval", "dataset_eval_onnx.json"), None)

    def stage_report(self) -> None:
        from adu_depth_core.demo_report import ReportInputs, write_report

        def load(*parts: str) -> dict[str, Any]:
            return json.loads(self.path(*parts).read_text())

        results = {m: load("eval", f"{m}.json") for m in MODELS}
        seed_results = {
            m: [load("eval", f"{self.seed_run(m, seed)}.json") for seed in range(self.seeds)]
            for m in STUDENTS
        }
        sgbm = self.path("eval", "sgbm.json")
        inputs = ReportInputs(
            workdir=self.dir,
            budget=self.budget.describe(results["student"].get("n_images")),
            image_size=self.budget.size,
            results=results,
            seed_results=seed_results,
            sgbm=load("eval", "sgbm.json") if sgbm.is_file() else None,
            bag=load("bag_eval", "bag_eval.json"),
            bag_dataset=load("bag_eval", "dataset_eval_onnx.json"),
            bag_topics=self._bag_topics(self.path("bag_eval", "student_depth_bag")),
            training_logs={m: self._training_log(m) for m in MODELS},
            panels=self._panel_frames(),
            stage_seconds={k: v["seconds"] for k, v in self.state["done"].items()},
        )
        write_report(inputs)

    # --- what the report shows ---------------------------------------------------------------------

    def _training_log(self, name: str) -> list[dict[str, Any]]:
        path = self.path(name, "metrics.jsonl")
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @staticmethod
    def _bag_topics(path: Path) -> list[tuple[str, str, int]]:
        from adu_depth_core.data import rosbag_io as rb

        with rb.open_bag(path) as reader:
            return [(c.topic, c.msgtype, c.msgcount) for c in reader.connections]

    def _panel_frames(self) -> list[Any]:
        """The three networks once more on the first test frames, for the comparison figure."""
        from adu_depth_core.data.factory import build_eval_dataset
        from adu_depth_core.demo_report import PanelFrame
        from adu_depth_core.evaluate import dataset_samples, load_predictor

        predictors = {m: load_predictor(self.checkpoint(m), "torch") for m in MODELS}
        dataset = build_eval_dataset(self._test_kitti(), needs_right=True)
        frames = []
        for sample in dataset_samples(dataset, limit=N_PANEL_FRAMES):
            out = {name: p.predict(sample.image, sample.K, sample.right) for name, p in predictors.items()}
            depths = {name: depth for name, (depth, _) in out.items()}
            frames.append(PanelFrame(sample.image, sample.gt, sample.gt_dense, depths, out["student"][1]))
        return frames
