"""ONNX Runtime vs PyTorch eager on the CPU, and the overhead of `DepthEstimator.estimate()`.

    python benchmarks/bench_runtime.py                      # nano + swin_t at 128x416 and 352x1216
    python benchmarks/bench_runtime.py --runs 9 --threads 1 2 --out docs/benchmarks/runtime.md

For each preset and network size the student (random weights: speed does not depend on them) is saved,
exported with `export_onnx`, and both backends are timed side by side in one process, alternating one
PyTorch run and one ONNX Runtime run so that load from other processes hits both alike; the table gives
medians and the PyTorch/ORT ratio at each thread count (both runtimes get the same count). A second
table times ONNX Runtime at each graph-optimisation level, a third the full `estimate()` against the
bare network at 352x1216 (a KITTI-sized 375x1242 frame resized, and a frame already at network size).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adu_depth_core.checkpoint import save_checkpoint
from adu_depth_core.config import parse_size, to_dict
from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.models import ModelConfig, build_student
from adu_depth_core.runtime import DepthEstimator, InferenceGraph, export_onnx, load_student
from adu_depth_core.sysinfo import cpu_name

OPT_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


class Replay:
    """A backend that returns a recorded network output at once: `estimate()` through it times the
    estimator's own work (checks, resize/crop, mapping back, focal rescale) without the network.
    The output copy it makes per call is counted too, so the figure is an upper bound."""

    def __init__(self, backend, x: np.ndarray):
        self.name, self.info, self.max_batch, self.device = backend.name, backend.info, None, None
        self._out = backend.run(x)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._out[0].copy(), self._out[1].copy()


def median_ms(times: list[float]) -> float:
    return float(np.median(times) * 1e3)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, object], runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, calling them in turn (A B C A B C ...) after warm-up."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return times


def ort_session(path: Path, threads: int, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def prepare(preset: str, size: tuple[int, int], workdir: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    cfg = ModelConfig(preset=preset, input_size=size, pretrained=False)
    ckpt = workdir / f"{preset}_{size[0]}x{size[1]}.pt"
    payload = {"stage": "student", "model_config": to_dict(cfg), "model": build_student(cfg).state_dict()}
    save_checkpoint(ckpt, {**payload, "meta": {"focal_px": 721.5377 * size[1] / 1242}})
    start = time.perf_counter()
    onnx_path = export_onnx(ckpt, ckpt.with_suffix(".onnx"), size=size)
    print(f"  exported {onnx_path.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return ckpt, onnx_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["nano", "swin_t"])
    parser.add_argument("--sizes", nargs="+", default=["128x416", "352x1216"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per backend (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/runtime.md"))
    parser.add_argument("--workdir", type=Path, help="keep checkpoints/ONNX here (default: a temp folder)")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes]
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_runtime_")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(0)
    rows, level_rows, overhead_rows = [], [], []
    for preset in args.presets:
        for size in sizes:
            print(f"{preset} {size[0]}x{size[1]}", flush=True)
            ckpt, onnx_path = prepare(preset, size, workdir)
            model, _ = load_student(ckpt)
            graph = InferenceGraph(model).eval()
            x = rng.random((1, 3, *size), dtype=np.float32)
            xt = torch.from_numpy(x)
            for threads in args.threads:
                torch.set_num_threads(threads)
                sess = ort_session(onnx_path, threads)

                def run_torch(graph=graph, xt=xt) -> None:
                    with torch.inference_mode():
                        graph(xt)

                def run_ort(sess=sess, x=x) -> None:
                    sess.run(["depth", "sigma"], {"image": x})

                t = interleaved({"torch": run_torch, "ort": run_ort}, args.runs, args.warmup)
                row = (preset, size, threads, median_ms(t["torch"]), median_ms(t["ort"]))
                rows.append(row)
                print(
                    f"  threads {threads}: torch {row[3]:.1f} ms, ORT {row[4]:.1f} ms, ×{row[3] / row[4]:.2f}"
                )
            if size == sizes[-1]:
                threads = args.threads[0]
                torch.set_num_threads(threads)
                sessions = {level: ort_session(onnx_path, threads, level) for level in OPT_LEVELS}
                fns = {
                    lvl: (lambda s=s, x=x: s.run(["depth", "sigma"], {"image": x}))
                    for lvl, s in sessions.items()
                }
                t = interleaved(fns, args.runs, args.warmup)
                level_rows.append((preset, size, threads, {lvl: median_ms(v) for lvl, v in t.items()}))
                print("  ORT levels:", {lvl: round(median_ms(v), 1) for lvl, v in t.items()})
                # estimate() overhead at this size, on both backends
                kitti = rng.integers(0, 256, (375, 1242, 3), dtype=np.uint8)
                exact = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                K = np.array([[721.5377, 0, 609.6], [0, 721.5377, 172.9], [0, 0, 1]])
                for backend in ("onnxruntime", "torch"):
                    path = onnx_path if backend == "onnxruntime" else ckpt
                    est = DepthEstimator.from_path(path, backend=backend, device="cpu", threads=threads)
                    replay = DepthEstimator(Replay(est.backend, x), est.policy)
                    fns = {
                        "net": lambda est=est, x=x: est.infer(x),
                        "kitti": lambda est=est, f=kitti, K=K: est.estimate(f, K),
                        "exact": lambda est=est, f=exact: est.estimate(f),
                    }
                    t = interleaved(fns, args.runs, args.warmup)
                    med = {k: median_ms(v) for k, v in t.items()}
                    prepost = {
                        "pre_post_kitti": lambda e=replay, f=kitti, K=K: e.estimate(f, K),
                        "pre_post_exact": lambda e=replay, f=exact: e.estimate(f),
                    }
                    t = interleaved(prepost, 10 * args.runs, args.warmup)
                    med.update({k: median_ms(v) for k, v in t.items()})
                    overhead_rows.append((preset, size, backend, threads, med))
                    print(
                        f"  estimate() on {backend}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items())
                    )

    text = merge(args.out, render(args, rows, level_rows, overhead_rows))
    atomic_write_bytes(args.out, text.encode())
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


BEGIN = "<!-- generated by benchmarks/bench_runtime.py: begin -->"
END = "<!-- generated by benchmarks/bench_runtime.py: end -->"


def merge(path: Path, generated: str) -> str:
    """The generated tables between the markers; text around them in an existing file (the written-up
    findings) is kept."""
    block = f"{BEGIN}\n{generated.rstrip()}\n{END}\n"
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + block + ("\n" + tail if tail else "")
    return block


def render(args, rows, level_rows, overhead_rows) -> str:
    import onnxruntime as ort

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = [
        "# Runtime benchmark: ONNX Runtime vs PyTorch eager (CPU), and estimate() overhead",
        "",
        f"- machine: {cpu_name()} ({platform.machine()}, {os.cpu_count()} logical CPUs shared with other "
        f"jobs); figures are medians of {args.runs} runs after "
        f"{args.warmup} warm-up, the two runtimes alternating run by run",
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- versions: torch {torch.__version__}, onnxruntime {ort.__version__}, "
        f"Python {platform.python_version()}",
        "- graph: the exported student (`export_onnx`, dynamo exporter, ImageNet normalisation inside),",
        "  batch 1, random weights; ORT `CPUExecutionProvider`, `ORT_ENABLE_ALL`,",
        "  intra-op threads = torch threads",
        "",
        "## Network alone: median latency (ms), ratio = PyTorch / ORT (> 1: ORT faster)",
        "",
        "| preset | input | threads | PyTorch eager | ONNX Runtime | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for preset, size, threads, t_torch, t_ort in rows:
        ratio = t_torch / t_ort
        out.append(
            f"| {preset} | {size[0]}x{size[1]} | {threads} | {t_torch:.1f} | {t_ort:.1f} | {ratio:.2f} |"
        )
    out += [
        "",
        "## ONNX Runtime graph-optimisation levels (ms)",
        "",
        "| preset | input | threads | " + " | ".join(OPT_LEVELS) + " |",
        "|---|---|---|" + "---|" * len(OPT_LEVELS),
    ]
    for preset, size, threads, med in level_rows:
        cells = " | ".join(f"{med[lvl]:.1f}" for lvl in OPT_LEVELS)
        out.append(f"| {preset} | {size[0]}x{size[1]} | {threads} | {cells} |")
    out += [
        "",
        "## estimate() overhead over the bare network (ms)",
        "",
        "`kitti`: a 375x1242 frame with K (bilinear resize to the network, bilinear back, focal rescale);",
        "`exact`: a frame already at network size, no K (no resize). `estimate` is the full call, timed",
        "alternating with the bare network; `pre+post` is the estimator's own work alone (the network",
        "replaced by a recorded output, median of 10x as many runs): overhead = pre+post / network.",
        "",
        "| preset | input | backend | threads | network | estimate kitti | pre+post kitti | overhead "
        "| estimate exact | pre+post exact | overhead |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for preset, size, backend, threads, med in overhead_rows:
        net = med["net"]
        cells = []
        for frame in ("kitti", "exact"):
            pp = med[f"pre_post_{frame}"]
            cells.append(f"{med[frame]:.1f} | {pp:.2f} | {100 * pp / net:.1f} %")
        out.append(
            f"| {preset} | {size[0]}x{size[1]} | {backend} | {threads} | {net:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
