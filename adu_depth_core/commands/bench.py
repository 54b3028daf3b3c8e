"""`adu-depth bench`: latency, FPS and peak memory of a model on a backend.

adu-depth bench --model student.onnx --runs 50
adu-depth bench --model best.pt --backend torch --size 375x1242 --json bench.json

Times the bare network on a prepared batch of one, and the full `DepthEstimator.estimate()` (checks,
resize/crop, network, mapping back, focal rescale) on a random frame of --size (default: the network
input size), after warm-up runs. Peak memory: on CUDA `torch.cuda.max_memory_allocated` (torch's
allocator: the TensorRT engine's own activation memory is not in it); on CPU the growth of the process's
peak RSS (`getrusage` ru_maxrss) over its RSS before the model was loaded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from adu_depth_core.paths import add_overwrite_argument, check_output_file
from adu_depth_core.sysinfo import cpu_name
from adu_depth_core.vocab import BACKENDS, POLICIES

HELP = "Latency / FPS / memory of a model on a backend"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="student checkpoint, ONNX file or TensorRT engine")
    parser.add_argument(
        "--size", metavar="HxW", help="camera frame size for estimate() (default: network input)"
    )
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="(auto)")
    parser.add_argument("--policy", default="resize", choices=POLICIES, help="(resize)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: GPU if present)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per measurement (20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (3)")
    parser.add_argument("--fp16", action="store_true", help="TensorRT engine built from an ONNX file: FP16")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    add_overwrite_argument(parser, "the --json file")


def current_rss_bytes() -> int | None:
    """Resident set size now (Linux /proc), None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


def time_runs(
    fn: Callable[[], object], runs: int, warmup: int, sync: Callable[[], None] | None = None
) -> list[float]:
    """Wall-clock seconds of `runs` calls of `fn` after `warmup` untimed calls (`sync` after each call)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return times


def summarize(times: list[float]) -> dict[str, float]:
    t = np.asarray(times) * 1e3
    median = float(np.median(t))
    return {
        "min_ms": float(t.min()),
        "median_ms": median,
        "p90_ms": float(np.percentile(t, 90)),
        "fps": 1e3 / median if median > 0 else float("inf"),
    }


def benchmark(
    model: str | Path,
    size: tuple[int, int] | None = None,
    backend: str = "auto",
    policy: str = "resize",
    device: str | None = None,
    runs: int = 20,
    warmup: int = 3,
    fp16: bool = False,
) -> dict:
    """Run the benchmark and return the results dict that `bench` prints and writes."""
    import torch

    from adu_depth_core.runtime.estimator import DepthEstimator

    if runs < 1 or warmup < 0:
        raise ValueError(f"--runs must be ≥ 1 and --warmup ≥ 0, got {runs}, {warmup}")
    rss_before = current_rss_bytes()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    est = DepthEstimator.from_path(model, backend=backend, policy=policy, device=device, fp16=fp16)
    est.require_monocular("`bench`")
    info = est.info
    h, w = info.input_hw
    image_hw = size or (h, w)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    f_train = info.focal_px or 700.0
    K = np.array(
        [
            [f_train * image_hw[1] / w, 0, (image_hw[1] - 1) / 2],
            [0, f_train, (image_hw[0] - 1) / 2],
            [0, 0, 1],
        ]
    )
    x = rng.random((1, 3, h, w), dtype=np.float32)
    on_gpu = est.backend.device is not None
    if on_gpu:
        dev = est.backend.device
        x_dev = torch.from_numpy(x).to(dev)

        def net() -> object:
            return est.backend.run_torch(x_dev)

        def sync() -> None:
            torch.cuda.synchronize(dev)

    else:

        def net() -> object:
            return est.backend.run(x)

        sync = None
    net_times = time_runs(net, runs, warmup, sync)
    full_times = time_runs(lambda: est.estimate(frame, K), runs, warmup, sync)
    result = {
        "model": str(model),
        "backend": est.backend_name,
        "device": torch.cuda.get_device_name(est.backend.device) if on_gpu else cpu_name(),
        "policy": policy,
        "network_input": f"{h}x{w}",
        "image_size": f"{image_hw[0]}x{image_hw[1]}",
        "runs": runs,
        "warmup": warmup,
        "network": summarize(net_times),
        "estimate": summarize(full_times),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    result["estimate_overhead_pct"] = 100 * (
        result["estimate"]["median_ms"] / result["network"]["median_ms"] - 1
    )
    if on_gpu:
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(est.backend.device) / 2**20
    else:
        base = rss_before if rss_before is not None else 0
        result["peak_rss_delta_mb"] = (peak_rss_bytes() - base) / 2**20
    providers = getattr(est.backend, "providers", None)
    if providers:
        result["providers"] = list(providers)
    return result


def format_table(result: dict) -> str:
    lines = [
        f"{result['model']}: backend {result['backend']} on {result['device']}, "
        f"network {result['network_input']}, frame {result['image_size']} ({result['policy']}), "
        f"{result['runs']} runs after {result['warmup']} warm-up",
        f"{'':<26}{'min ms':>9}{'median ms':>11}{'p90 ms':>9}{'FPS':>8}",
    ]
    for key, label in (("network", "network alone"), ("estimate", "estimate() pre+net+post")):
        r = result[key]
        lines.append(
            f"{label:<26}{r['min_ms']:>9.2f}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}{r['fps']:>8.2f}"
        )
    lines.append(f"estimate() overhead over the network: {result['estimate_overhead_pct']:+.1f} % (medians)")
    if "gpu_peak_mb" in result:
        lines.append(f"peak GPU memory (torch allocator): {result['gpu_peak_mb']:.1f} MiB")
    else:
        lines.append(f"peak RSS growth (model load + runs): {result['peak_rss_delta_mb']:.1f} MiB")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from adu_depth_core.config import parse_size
    from adu_depth_core.fileio import atomic_write_bytes

    size = parse_size(args.size) if args.size else None
    if args.json:
        check_output_file(args.json, "--json", overwrite=args.overwrite, inputs=[args.model])
    result = benchmark(
        args.model, size, args.backend, args.policy, args.device, args.runs, args.warmup, fp16=args.fp16
    )
    print(format_table(result))
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
        print(f"wrote {args.json}")
    return 0
