"""Peak memory and time of the distillation feature adapters against the token count.

Each (path, tokens) point runs in a fresh subprocess: build one adapter, run one warm-up forward +
backward, then `--repeats` timed ones, and report their median wall time and the peak resident memory
above the level just before the first timed step (VmHWM reset through /proc/self/clear_refs, Linux
only). On CUDA the peak is `torch.cuda.max_memory_allocated` above the allocation at that point.

Paths: `fused` (AttentionAdapter as used in training: a fused SDPA kernel — flash attention on CPU),
`chunked` (the fallback: query chunks with recomputed scores), `conv` (the 1×1 adapter of the
−Attention ablation, for reference). `dense_NxN_mb` is what one fp32 N×N score matrix per head would
take — what an explicit attention would need at the least.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_adapters.py
    .venv/bin/python benchmarks/bench_adapters.py --device cuda --maps 88x280 --paths fused chunked
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# 1/32, 1/16, 1/8 and 1/4 of a 352x1120 input, plus two square maps.
DEFAULT_MAPS = ["32x32", "11x35", "22x70", "44x140", "64x160", "88x280"]


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(args: argparse.Namespace) -> dict:
    import torch

    from adu_depth_core.distill import AttentionAdapter, ConvAdapter

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = (int(v) for v in args.map.split("x"))
    device = torch.device(args.device)
    if args.path == "conv":
        adapter = ConvAdapter(args.channels, args.channels)
    else:
        adapter = AttentionAdapter(
            args.channels,
            args.channels,
            heads=args.heads,
            chunk=args.chunk,
            force_chunked=args.path == "chunked",
        )
    adapter = adapter.to(device)
    x = torch.randn(args.batch, args.channels, h, w, device=device, requires_grad=True)

    def step() -> None:
        adapter.zero_grad(set_to_none=True)
        x.grad = None
        adapter(x).square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: lazy imports and allocator caches are not what we measure
    adapter.zero_grad(set_to_none=True)
    x.grad = None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
            fh.write("5")
        base = _rss_mb("VmRSS")
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _rss_mb("VmHWM") - base
    n = h * w
    return {
        "path": args.path,
        "map": args.map,
        "tokens": n,
        "peak_mb": round(peak, 1),
        "median_s": round(statistics.median(times), 4),
        "dense_NxN_mb": round(args.batch * args.heads * n * n * 4 / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", nargs="+", default=DEFAULT_MAPS, help="feature map sizes HxW")
    parser.add_argument("--paths", nargs="+", default=["fused", "chunked", "conv"])
    parser.add_argument("--channels", type=int, default=96, help="C_s = C_t (Swin-T level 1: 96)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--map", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    import torch

    print(
        f"# {datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()} "
        f"torch {torch.__version__} device={args.device} threads={args.threads} "
        f"C={args.channels} heads={args.heads} chunk={args.chunk} batch={args.batch} repeats={args.repeats}"
    )
    print("| path | map | tokens | peak MB | peak KB/token | median fwd+bwd s | dense N×N MB |")
    print("|---|---|---|---|---|---|---|")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=root)
    for path in args.paths:
        for size in args.maps:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--map", size, "--path", path]
            for name in ("channels", "heads", "chunk", "batch", "repeats", "threads", "device"):
                cmd += [f"--{name}", str(getattr(args, name))]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                print(f"| {path} | {size} | failed: {proc.stderr.strip().splitlines()[-1]} |||||")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            per_token = 1024 * r["peak_mb"] / r["tokens"]
            print(
                f"| {r['path']} | {r['map']} | {r['tokens']} | {r['peak_mb']} | {per_token:.2f} | "
                f"{r['median_s']} | {r['dense_NxN_mb']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
