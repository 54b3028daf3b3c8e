"""`adu-depth export`: the student's inference graph to ONNX (checked in ONNX Runtime), optionally a
TensorRT engine.

adu-depth export --model runs/student/best.pt --onnx student.onnx                       # 352x1216, batch 1
adu-depth export --model best.pt --onnx student.onnx --size 352x1216 --dynamic-batch
adu-depth export --model best.pt --onnx student.onnx --engine student.engine --fp16 --workspace-gb 4
"""

from __future__ import annotations

import argparse
import logging

from adu_depth_core.paths import add_overwrite_argument, check_output_file

HELP = "Export the student to ONNX (checked in ONNX Runtime) and optionally a TensorRT engine"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="CKPT", help="student checkpoint (.pt/.pth/.ckpt)")
    parser.add_argument(
        "--onnx",
        required=True,
        metavar="OUT.onnx",
        help="ONNX file to write (missing parent folders are created)",
    )
    parser.add_argument(
        "--size", default="352x1216", metavar="HxW", help="fixed network input, multiples of 32 (352x1216)"
    )
    parser.add_argument("--opset", type=int, default=17, help="requested ONNX opset (≥ 17; default 17)")
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="symbolic batch dimension (H and W stay fixed)"
    )
    parser.add_argument(
        "--engine",
        metavar="OUT.engine",
        help="also build a TensorRT engine (needs tensorrt and a GPU; missing parent folders are created)",
    )
    parser.add_argument("--fp16", action="store_true", help="TensorRT: allow FP16 kernels")
    parser.add_argument(
        "--workspace-gb", type=float, default=4.0, help="TensorRT: builder workspace limit (GiB, 4)"
    )
    parser.add_argument(
        "--max-batch", type=int, default=8, help="TensorRT: largest batch of a --dynamic-batch engine (8)"
    )
    add_overwrite_argument(parser, "--onnx / --engine files")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from adu_depth_core.runtime.backends import ENGINE_SUFFIXES
    from adu_depth_core.runtime.export import export_onnx, read_onnx_info
    from adu_depth_core.runtime.tensorrt_backend import ensure_engine, require_tensorrt

    if not Path(args.model).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.model}")
    check_output_file(args.onnx, "--onnx", overwrite=args.overwrite, inputs=[args.model])
    if args.engine is not None:
        check_output_file(args.engine, "--engine", overwrite=args.overwrite, inputs=[args.model, args.onnx])
    if args.engine is None and args.fp16:
        raise ValueError("--fp16 applies to the TensorRT engine; add --engine OUT.engine")
    if args.engine is not None:
        if Path(args.engine).suffix.lower() not in ENGINE_SUFFIXES:
            raise ValueError(f"--engine {args.engine}: expected a file ending in {ENGINE_SUFFIXES}")
        require_tensorrt("--engine")  # fail before the (slow) export, not after it
    onnx_path = export_onnx(
        args.model, args.onnx, size=args.size, opset=args.opset, dynamic_batch=args.dynamic_batch
    )
    info, batch = read_onnx_info(onnx_path)
    print(
        f"wrote {onnx_path}: input image float32 ({'batch' if batch is None else batch},3,"
        f"{info.input_hw[0]},{info.input_hw[1]}) RGB [0,1] → depth, sigma [m]; opset {info.opset}; "
        f"preset {info.preset}, max depth {info.max_depth} m, training focal {info.focal_px} px"
    )
    if args.engine is not None:
        engine = ensure_engine(
            onnx_path,
            fp16=args.fp16,
            workspace_gb=args.workspace_gb,
            engine_path=args.engine,
            max_batch=args.max_batch,
            force=True,
        )
        print(f"wrote {engine} ({'fp16' if args.fp16 else 'fp32'}) and {engine.name}.json")
    return 0
