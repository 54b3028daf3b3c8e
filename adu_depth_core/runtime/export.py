"""Export the student's inference graph to ONNX, checked against PyTorch in ONNX Runtime.

`export_onnx` writes the `InferenceGraph` (normalisation inside; input `image` float32 (B,3,H,W) RGB in
[0, 1]; outputs `depth` and `sigma` in metres) at one fixed deployment size, optionally with a dynamic
batch dimension. It uses the dynamo exporter (REFERENCE §3: the TorchScript exporter fails on the PPM's
adaptive pool at deployment sizes); asking for opset 17 can yield 18 when an op has no down-converter,
so the opset actually written is read back from the graph and stored in the metadata.

Nothing is written unless `onnx.checker` accepts the graph and ONNX Runtime reproduces PyTorch on a
random input to a relative error (max |ort − torch| / max |torch|, per output) of at most `rtol`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adu_depth_core.config import parse_size
from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.runtime.backends import (
    INPUT_NAME,
    OUTPUT_NAMES,
    InferenceGraph,
    ModelInfo,
    check_network_size,
    load_student,
)

logger = logging.getLogger(__name__)

DEFAULT_SIZE = (352, 1216)
DEFAULT_OPSET = 17
PARITY_RTOL = 1e-4
_PROTO_LIMIT = 2**31 - 1  # protobuf's single-message limit; larger graphs would need external data


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's own loggers report every rewrite at INFO and the opset fallback with a traceback;
    keep them to errors while exporting (our summary line says what matters)."""
    names = ("torch.onnx", "onnxscript", "onnx_ir")
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def onnx_opset(model_proto) -> int:
    """The default-domain opset a graph was written with."""
    for entry in model_proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ValueError("ONNX graph has no default-domain opset import")


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |actual − reference| / max |reference| (0 when both are 0)."""
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    diff = float(np.max(np.abs(actual.astype(np.float64) - reference))) if reference.size else 0.0
    return diff / scale if scale > 0 else diff


def _model_info_for_module(model: nn.Module, size: tuple[int, int], focal_px: float | None) -> ModelInfo:
    stage = getattr(model, "stage", "student")
    if stage != "student":
        raise ValueError(
            f"{type(model).__name__} is a {stage!r} network; only the monocular student is deployed"
        )
    cfg = getattr(model, "cfg", None) or getattr(model, "config", None)
    max_depth = getattr(cfg, "max_depth", None) or getattr(model, "max_depth", None)
    return ModelInfo(
        source=f"<{type(model).__name__}>",
        backend="onnx",
        input_hw=size,
        max_depth=float(max_depth) if max_depth else None,
        focal_px=float(focal_px) if focal_px else None,
        preset=getattr(cfg, "preset", None),
    )


def export_onnx(
    model_or_ckpt_path: nn.Module | str | Path,
    out_path: str | Path,
    size: tuple[int, int] | str = DEFAULT_SIZE,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    *,
    focal_px: float | None = None,
    rtol: float = PARITY_RTOL,
    seed: int = 0,
) -> Path:
    """Export a student checkpoint (or a student `nn.Module`) to `out_path` and return the path.

    Args:
        model_or_ckpt_path: a student checkpoint file, or a student `DepthNet` (then `focal_px` supplies
            the training focal that a checkpoint would carry in `meta`).
        out_path: the `.onnx` file to write (atomically; an existing file is replaced only on success).
        size: fixed network input (H, W) or 'HxW', multiples of 32.
        opset: requested ONNX opset (≥ 17; the dynamo exporter may write a higher one, recorded).
        dynamic_batch: make the batch dimension symbolic ('batch'); H and W stay fixed.
        rtol: largest accepted relative error of ONNX Runtime against PyTorch.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise ValueError(f"{out_path}: the ONNX output file must end in .onnx")
    size = check_network_size(parse_size(size), "export size")
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: use ≥ 17 (LayerNormalization; see docs/RUNTIME.md)")

    if isinstance(model_or_ckpt_path, nn.Module):
        model, source = model_or_ckpt_path, f"<{type(model_or_ckpt_path).__name__}>"
        info = _model_info_for_module(model, size, focal_px)
    else:
        source = str(model_or_ckpt_path)
        if Path(source).resolve() == out_path.resolve():
            raise ValueError(f"{out_path}: refusing to overwrite the input checkpoint")
        model, info = load_student(model_or_ckpt_path, size)
        if focal_px:
            info = dataclasses.replace(info, focal_px=float(focal_px))
    was_inference_only = getattr(model, "inference_only", False)
    was_training = model.training
    graph = InferenceGraph(model).eval()
    try:
        data, info, errors = _export_and_check(graph, source, info, size, opset, dynamic_batch, rtol, seed)
    finally:
        model.inference_only = was_inference_only
        model.train(was_training)
    atomic_write_bytes(out_path, data)
    logger.info(
        "exported %s → %s (%dx%d, opset %d%s, %.1f MB); "
        "ONNX Runtime vs PyTorch rel. error depth %.2e, sigma %.2e",
        source, out_path, size[0], size[1], info.opset, ", dynamic batch" if dynamic_batch else "",
        len(data) / 1e6, errors["depth"], errors["sigma"],
    )  # fmt: skip
    return out_path


def _export_and_check(
    graph: InferenceGraph,
    source: str,
    info: ModelInfo,
    size: tuple[int, int],
    opset: int,
    dynamic_batch: bool,
    rtol: float,
    seed: int,
) -> tuple[bytes, ModelInfo, dict[str, float]]:
    import onnx
    import onnxruntime as ort

    device = next(graph.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    batch = 2 if dynamic_batch else 1  # a batch of 1 would be specialised by torch.export
    example = torch.rand((batch, 3, *size), generator=generator).to(device)
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=1024)}}
    try:
        with torch.no_grad(), _quiet_exporter():
            reference = [t.float().cpu().numpy() for t in graph(example)]
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
    except Exception as exc:
        raise RuntimeError(
            f"ONNX export of {source} at {size[0]}x{size[1]} failed ({type(exc).__name__}: {exc}); "
            "is it a 3-channel student network?"
        ) from exc
    proto = program.model_proto
    written_opset = onnx_opset(proto)
    if written_opset != opset:
        logger.info(
            "requested opset %d, the exporter wrote opset %d (recorded in the metadata)", opset, written_opset
        )
    info = dataclasses.replace(info, opset=written_opset, backend="onnx")
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, info.to_metadata())
    proto.producer_name = "adu-depth"
    if proto.ByteSize() > _PROTO_LIMIT:
        raise ValueError(f"{source}: the graph is over 2 GB; external-data ONNX files are not supported")
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example.cpu().numpy()})
    errors = {name: relative_error(g, r) for name, g, r in zip(OUTPUT_NAMES, got, reference)}
    if dynamic_batch:  # the symbolic batch must also serve a single frame
        single = session.run(list(OUTPUT_NAMES), {INPUT_NAME: example[:1].cpu().numpy()})
        for name, g, r in zip(OUTPUT_NAMES, single, reference):
            errors[name] = max(errors[name], relative_error(g, r[:1]))
    bad = {k: v for k, v in errors.items() if not v <= rtol}
    if bad:
        raise RuntimeError(
            f"ONNX export of {source} does not reproduce PyTorch in ONNX Runtime: relative error "
            + ", ".join(f"{k} {v:.2e}" for k, v in bad.items())
            + f" > {rtol:.0e}; nothing was written"
        )
    return data, info, errors


def read_onnx_info(path: str | Path, backend: str = "onnx") -> tuple[ModelInfo, int | None]:
    """The `ModelInfo` and fixed batch (None = dynamic) of an exported graph, checking its inputs/outputs."""
    import onnx

    from adu_depth_core.runtime.backends import check_graph_io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None

    def dims(value) -> list:
        return [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value.type.tensor_type.shape.dim
        ]

    initializers = {i.name for i in proto.graph.initializer}
    inputs = [
        (v.name, dims(v), onnx.helper.tensor_dtype_to_string(v.type.tensor_type.elem_type))
        for v in proto.graph.input
        if v.name not in initializers
    ]
    hw, batch = check_graph_io(str(path), inputs, [o.name for o in proto.graph.output])
    meta = {p.key: p.value for p in proto.metadata_props}
    return ModelInfo.from_metadata(meta, str(path), backend, hw), batch
