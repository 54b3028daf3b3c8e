"""The Python steps of benchmarks/gpu_suite.sh (issue 16): FP16 parity, training steps/s, node latency.

    python benchmarks/gpu_suite.py parity --preset swin_t --size 352x1216 --workdir out --out out/p.json
    python benchmarks/gpu_suite.py train --preset swin_t --size 352x1216 --amp fp16 --out out/t.json
    python benchmarks/gpu_suite.py node-latency --model out/swin_t/student.onnx --out out/n.json
    python benchmarks/gpu_suite.py summary out                     # markdown table of every JSON in out/

Each step writes one JSON (atomically). Where it cannot run — no CUDA, no TensorRT, no ROS 2 — it writes
`{"skipped": "<why>"}`, prints the reason and exits 0, so the suite goes on; a real failure exits 1.
Random weights (seed 0): speed and FP16-vs-FP32 agreement do not depend on training.

- parity: the student exported to ONNX; ONNX Runtime FP32 is the reference, the candidate (TensorRT FP16 by
  default; `--candidate torch` on a CPU) estimates the same synthetic rig frames; the result is the AbsRel
  difference mean(|d_cand − d_ref| / d_ref) over pixels valid in both, and its max over frames.
- train: forward + backward + AdamW step of the student at batch `--batch`, under `--amp` autocast
  (`train.objectives.autocast_context`, GradScaler for fp16), steps/s over `--steps` after warm-up.
- node-latency: depth_node on the model in a subprocess, fed `--frames` camera frames; the latency
  percentiles its /diagnostics report (arrival → outputs published).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adu_depth_core.checkpoint import save_checkpoint
from adu_depth_core.config import parse_size, to_dict
from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.models import ModelConfig, build_student

FOCAL_PX = 721.5  # KITTI-like at 352x1216


class Skip(Exception):
    """This step cannot run on this machine (the reason is recorded, the suite goes on)."""


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=True)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (text + "\n").encode())


def student_files(preset: str, size: tuple[int, int], workdir: Path) -> tuple[Path, Path]:
    """(checkpoint, ONNX) of a seed-0 student at `size` under workdir/<preset>/ (reused when present)."""
    from adu_depth_core.runtime import export_onnx

    folder = workdir / preset
    ckpt, onnx = folder / "student.pt", folder / "student.onnx"
    if not onnx.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        cfg = ModelConfig(preset=preset, input_size=size, pretrained=False)
        model = build_student(cfg)
        save_checkpoint(
            ckpt,
            {"stage": "student", "model_config": to_dict(cfg), "model": model.state_dict(),
             "meta": {"focal_px": FOCAL_PX}},
        )  # fmt: skip
        export_onnx(ckpt, onnx, size=size)
    return ckpt, onnx


def absrel_difference(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """mean(|candidate − reference| / reference) over pixels finite and > 0 in both, and their count."""
    c, r = np.asarray(candidate, np.float64), np.asarray(reference, np.float64)
    if c.shape != r.shape:
        raise ValueError(f"depth maps differ in shape: {c.shape} vs {r.shape}")
    valid = np.isfinite(c) & np.isfinite(r) & (r > 0) & (c > 0)
    if not valid.any():
        raise ValueError("no pixel is valid in both depth maps")
    return float(np.mean(np.abs(c[valid] - r[valid]) / r[valid])), int(valid.sum())


def _candidate(name: str, ckpt: Path, onnx: Path) -> Any:
    from adu_depth_core.runtime import DepthEstimator
    from adu_depth_core.runtime import tensorrt_backend as trtb

    if name == "tensorrt-fp16":
        if not torch.cuda.is_available():
            raise Skip("no CUDA device: TensorRT FP16 parity needs a GPU")
        if not trtb.tensorrt_available():
            raise Skip("tensorrt is not installed (pip install -e '.[tensorrt]')")
        return DepthEstimator.from_path(onnx, backend="tensorrt", device="cuda", fp16=True)
    if name == "torch":
        return DepthEstimator.from_path(ckpt, backend="torch", device="cpu")
    raise ValueError(f"candidate must be tensorrt-fp16 or torch, got {name!r}")


def parity(args: argparse.Namespace) -> dict[str, Any]:
    from adu_depth_core.data.synthetic import SyntheticRig
    from adu_depth_core.runtime import DepthEstimator

    size = parse_size(args.size)
    ckpt, onnx = student_files(args.preset, size, args.workdir)
    candidate = _candidate(args.candidate, ckpt, onnx)
    reference = DepthEstimator.from_path(onnx, backend="onnxruntime", device="cpu")
    rig = SyntheticRig(size=size)
    per_frame = []
    for seed in range(args.frames):
        frame = rig.render(seed)
        d_ref, _ = reference.estimate(frame.left, frame.K)
        d_cand, _ = candidate.estimate(frame.left, frame.K)
        per_frame.append(absrel_difference(d_cand, d_ref)[0])
    return {
        "step": "parity", "preset": args.preset, "size": list(size), "candidate": args.candidate,
        "reference": "onnxruntime fp32 (cpu)", "frames": args.frames,
        "absrel_difference_mean": float(np.mean(per_frame)),
        "absrel_difference_max": float(np.max(per_frame)),
        "onnx": str(onnx),
    }  # fmt: skip


def train(args: argparse.Namespace) -> dict[str, Any]:
    from adu_depth_core.train.objectives import autocast_context

    size = parse_size(args.size)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.require_cuda and device.type != "cuda":
        raise Skip("no CUDA device: AMP training steps/s needs a GPU")
    amp = args.amp if device.type == "cuda" else "none"  # autocast is CUDA-only in the engine
    torch.manual_seed(0)
    model = (
        build_student(ModelConfig(preset=args.preset, input_size=size, pretrained=False)).to(device).train()
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    x = torch.rand(args.batch, 3, *size, device=device)
    target = torch.rand(args.batch, 1, *size, device=device) * 50 + 1
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with autocast_context(device, amp):
            out = model(x)
            loss = (out.depth.float() - target).abs().mean() + out.log_var.float().mean() * 1e-3
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at step {i}: {loss.item()}")
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "step": "train", "preset": args.preset, "size": list(size), "batch": args.batch, "amp": amp,
        "device": str(device), "steps": args.steps, "step_s_median": median, "steps_per_s": 1.0 / median,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }  # fmt: skip


def node_latency(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
    except ImportError as exc:
        raise Skip(f"ROS 2 is not sourced ({exc}): no node latency") from None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
    import ros_helpers as rh

    size = parse_size(args.size)
    node_proc = rh.NodeProcess(
        "adu_depth_ros.depth_node", "-r", "__ns:=/gpu_suite", "-p", f"model_path:={args.model}",
        "-p", f"backend:={args.backend}", "-p", "use_camera_info:=false",
    )  # fmt: skip
    try:
        if not node_proc.wait_for("input /gpu_suite/image", timeout_s=600):
            raise RuntimeError(f"depth_node did not start:\n{node_proc.output[-3000:]}")
        rclpy.init()
        node = rclpy.create_node("gpu_suite_feeder")
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        received: list[int] = []
        node.create_subscription(Image, "/gpu_suite/depth/image", lambda m: received.append(1), qos)
        diags: list[dict[str, str]] = []

        def on_diag(arr: Any) -> None:
            for s in arr.status:
                if s.name.endswith("depth estimation"):
                    diags.append({v.key: v.value for v in s.values})

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
        pub = node.create_publisher(Image, "/gpu_suite/image", qos)
        rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
        sent = 0

        def step() -> None:
            nonlocal sent
            if sent < args.frames:
                sent += 1
                pub.publish(rh.image_msg(rgb, "rgb8", rh.header((1_700_000_000 + sent, 0), "cam")))

        rh.spin_until(node, lambda: sent >= args.frames and len(received) >= args.frames * 0.9,
                      timeout_s=600, step=step, period_s=1.0 / args.rate)  # fmt: skip
        rh.spin_until(node, lambda: bool(diags) and int(diags[-1].get("frames out", 0)) >= len(received),
                      timeout_s=5)  # fmt: skip
        node.destroy_node()
        rclpy.shutdown()
    finally:
        node_proc.signal(2)
        node_proc.finish()
    last = diags[-1] if diags else {}
    return {
        "step": "node-latency", "model": str(args.model), "backend": args.backend, "size": list(size),
        "frames_sent": sent, "frames_received": len(received), "rate_hz": args.rate,
        "latency_ms": {k.split()[1]: float(v) for k, v in last.items() if k.startswith("latency ")},
        "diagnostics": last, "node_exit_code": node_proc.proc.returncode,
    }  # fmt: skip


def summary(folder: Path) -> str:
    """Markdown lines from the step JSONs in `folder` (for docs/BENCHMARKS.md)."""
    lines = ["| step | setting | result |", "|---|---|---|"]
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "skipped" in data:
            lines.append(f"| {path.stem} | — | skipped: {data['skipped']} |")
        elif data.get("step") == "parity":
            lines.append(
                f"| {path.stem} | {data['preset']} {data['size'][0]}x{data['size'][1]}, "
                f"{data['candidate']} vs {data['reference']}, {data['frames']} frames | AbsRel difference "
                f"mean {data['absrel_difference_mean']:.2e}, max {data['absrel_difference_max']:.2e} |"
            )
        elif data.get("step") == "train":
            lines.append(
                f"| {path.stem} | {data['preset']} {data['size'][0]}x{data['size'][1]}, batch "
                f"{data['batch']}, amp {data['amp']}, {data['device']} | {data['steps_per_s']:.2f} steps/s |"
            )
        elif data.get("step") == "node-latency":
            lat = ", ".join(f"{k} {v:.1f} ms" for k, v in data["latency_ms"].items())
            lines.append(
                f"| {path.stem} | {data['backend']}, {data['frames_sent']} frames at {data['rate_hz']} Hz "
                f"| {lat} |"
            )
        elif "fps" in json.dumps(data).lower():
            lines.append(f"| {path.stem} | adu-depth bench | {json.dumps(data)[:200]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity")
    p.add_argument("--preset", default="swin_t")
    p.add_argument("--size", default="352x1216")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--candidate", default="tensorrt-fp16", choices=["tensorrt-fp16", "torch"])
    p.add_argument("--workdir", type=Path, default=Path("gpu_suite_out"))
    t = sub.add_parser("train")
    t.add_argument("--preset", default="swin_t")
    t.add_argument("--size", default="352x1216")
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--amp", default="fp16", choices=["none", "bf16", "fp16"])
    t.add_argument("--device", default=None)
    t.add_argument("--require-cuda", action="store_true", help="skip (not measure on the CPU) without CUDA")
    n = sub.add_parser("node-latency")
    n.add_argument("--model", type=Path, required=True)
    n.add_argument("--backend", default="tensorrt")
    n.add_argument("--size", default="375x1242", help="camera frame size (HxW)")
    n.add_argument("--frames", type=int, default=100)
    n.add_argument("--rate", type=float, default=10.0)
    s = sub.add_parser("summary")
    s.add_argument("folder", type=Path)
    for q in (p, t, n):
        q.add_argument("--out", type=Path, help="write the JSON here (atomically)")
    args = parser.parse_args(argv)
    if args.cmd == "summary":
        print(summary(args.folder))
        return 0
    step = {"parity": parity, "train": train, "node-latency": node_latency}[args.cmd]
    try:
        result = step(args)
    except Skip as why:
        print(f"skipped: {why}", file=sys.stderr)
        write_json(args.out, {"step": args.cmd, "skipped": str(why)})
        return 0
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
