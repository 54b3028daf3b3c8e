"""TensorRT 10 backend: build a serialized engine from the exported ONNX graph, cache it, run it on torch
CUDA tensors.

Engines are tied to the TensorRT version and the GPU, so each one is keyed by `EngineSpec`: the SHA-256 of
the ONNX bytes, the precision, the input shapes, the TensorRT version and the GPU name. The cached engine
lives next to the ONNX file (`<stem>.<precision>.<key[:12]>.engine`) with a JSON sidecar
(`<engine>.json`) holding the key, the spec, the ONNX path and the ONNX metadata (input size, max depth,
training focal), so `from_path(engine)` knows what it runs. An engine is rebuilt when its key differs from
the one expected here or when TensorRT cannot deserialize it. The sidecar is written after the engine, so
an interrupted build leaves no sidecar and is rebuilt on the next start.

`tensorrt` is imported lazily: everything but building and running works (and is tested) without it.
Execution uses `execute_async_v3` on torch's current CUDA stream with tensor addresses taken from torch
tensors (no pycuda).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adu_depth_core.fileio import atomic_write_bytes
from adu_depth_core.runtime.backends import INPUT_NAME, OUTPUT_NAMES, ModelInfo, check_graph_io
from adu_depth_core.runtime.export import read_onnx_info

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
DEFAULT_WORKSPACE_GB = 4.0
DEFAULT_MAX_BATCH = 8  # upper bound of the optimisation profile for dynamic-batch graphs
SIDECAR_FORMAT = "adu_depth_engine/1"


def tensorrt_available() -> bool:
    """True when the `tensorrt` Python package is installed and a CUDA device is visible."""
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def require_tensorrt(what: str):
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeError(
            f"{what} needs the TensorRT Python package (pip install 'adu_depth[tensorrt]' or the "
            "tensorrt wheel matching your CUDA); without it use the ONNX file with backend 'onnxruntime'"
        ) from None
    if not torch.cuda.is_available():
        raise RuntimeError(f"{what} needs a CUDA GPU, and torch sees none")
    return trt


def _cuda_device(device: str | torch.device | None) -> torch.device:
    device = torch.device(device or "cuda")
    if device.type != "cuda":
        raise ValueError(f"the TensorRT backend runs on a CUDA device, got device={str(device)!r}")
    return device


@dataclass(frozen=True)
class EngineSpec:
    """Everything a serialized engine depends on; `key()` names the cached file and the sidecar checks it."""

    onnx_sha256: str
    precision: str
    min_shape: tuple[int, int, int, int]
    opt_shape: tuple[int, int, int, int]
    max_shape: tuple[int, int, int, int]
    tensorrt_version: str
    gpu_name: str

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(data) != fields:
            raise ValueError(f"engine spec has keys {sorted(data)}, expected {sorted(fields)}")
        shapes = {k: tuple(int(v) for v in data[k]) for k in ("min_shape", "opt_shape", "max_shape")}
        return cls(**{**data, **shapes})

    def differences(self, other: EngineSpec) -> list[str]:
        """Human-readable 'field: other → self' for every field that differs."""
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        return [f"{k}: {b[k]} → {a[k]}" for k in a if a[k] != b[k]]


def make_spec(
    onnx_bytes: bytes,
    input_hw: tuple[int, int],
    fixed_batch: int | None,
    fp16: bool,
    tensorrt_version: str,
    gpu_name: str,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> EngineSpec:
    """The spec of the engine for this ONNX graph, precision and machine."""
    h, w = input_hw
    if fixed_batch is not None:
        shapes = [(fixed_batch, 3, h, w)] * 3
    else:
        if max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        shapes = [(1, 3, h, w), (1, 3, h, w), (max_batch, 3, h, w)]
    return EngineSpec(
        onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        precision="fp16" if fp16 else "fp32",
        min_shape=shapes[0],
        opt_shape=shapes[1],
        max_shape=shapes[2],
        tensorrt_version=str(tensorrt_version),
        gpu_name=str(gpu_name),
    )


def cached_engine_path(onnx_path: str | Path, spec: EngineSpec) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{spec.precision}.{spec.key()[:12]}.engine")


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, spec: EngineSpec, info: ModelInfo, onnx_path: str | Path) -> Path:
    data = {
        "format": SIDECAR_FORMAT,
        "key": spec.key(),
        "spec": dataclasses.asdict(spec),
        "onnx_path": str(Path(onnx_path).resolve()),
        "metadata": info.to_metadata(),
    }
    path = sidecar_path(engine_path)
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The sidecar of an engine; ValueError naming the file when it is missing or malformed."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ValueError(
            f"{engine_path}: no sidecar {path.name} next to the engine (it records the ONNX metadata and "
            "the build key); rebuild the engine with `adu-depth export --engine` or load the ONNX file"
        )
    try:
        data = json.loads(path.read_text())
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        data["spec"] = EngineSpec.from_dict(data["spec"])
        if data["key"] != data["spec"].key():
            raise ValueError("key does not match the recorded spec")
        data["metadata"] = dict(data["metadata"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a valid engine sidecar ({SIDECAR_FORMAT}): {exc}") from None
    return data


def rebuild_reason(engine_path: str | Path, expected: EngineSpec) -> str | None:
    """None when `engine_path` holds the engine for `expected`, else why it must be (re)built."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return "no cached engine"
    try:
        recorded = read_sidecar(engine_path)["spec"]
    except ValueError as exc:
        return str(exc)
    if recorded.key() != expected.key():
        return "engine key changed (" + "; ".join(expected.differences(recorded)) + ")"
    return None


def build_engine(onnx_bytes: bytes, spec: EngineSpec, workspace_gb: float = DEFAULT_WORKSPACE_GB) -> bytes:
    """Serialized TensorRT engine for the ONNX graph (needs tensorrt and CUDA)."""
    trt = require_tensorrt("building a TensorRT engine")
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if spec.precision == "fp16":
        flag = getattr(trt.BuilderFlag, "FP16", None)
        if flag is None:  # TensorRT 11 removed weakly-typed precision flags
            raise RuntimeError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16; build the fp32 engine")
        config.set_flag(flag)
    if spec.min_shape != spec.max_shape:
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, spec.min_shape, spec.opt_shape, spec.max_shape)
        config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(blob)


def _current_spec(
    onnx_path: Path, fp16: bool, device: torch.device, max_batch: int
) -> tuple[bytes, EngineSpec, ModelInfo]:
    trt = require_tensorrt(f"TensorRT for {onnx_path}")
    info, fixed_batch = read_onnx_info(onnx_path, backend="tensorrt")
    onnx_bytes = onnx_path.read_bytes()
    spec = make_spec(
        onnx_bytes,
        info.input_hw,
        fixed_batch,
        fp16,
        trt.__version__,
        torch.cuda.get_device_name(device),
        max_batch,
    )
    return onnx_bytes, spec, info


def ensure_engine(
    onnx_path: str | Path,
    fp16: bool = False,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    engine_path: str | Path | None = None,
    device: str | torch.device | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    force: bool = False,
) -> Path:
    """Return an engine for `onnx_path` on this machine, building it (and its sidecar) when needed."""
    onnx_path = Path(onnx_path)
    device = _cuda_device(device)
    onnx_bytes, spec, info = _current_spec(onnx_path, fp16, device, max_batch)
    engine_path = Path(engine_path) if engine_path else cached_engine_path(onnx_path, spec)
    reason = "rebuild forced" if force else rebuild_reason(engine_path, spec)
    if reason is None:
        logger.info("using cached TensorRT engine %s", engine_path)
        return engine_path
    logger.info(
        "building TensorRT engine %s (%s, %s); this takes a while", engine_path, spec.precision, reason
    )
    with torch.cuda.device(device):
        blob = build_engine(onnx_bytes, spec, workspace_gb)
    sidecar_path(engine_path).unlink(missing_ok=True)
    atomic_write_bytes(engine_path, blob)
    write_sidecar(engine_path, spec, info, onnx_path)  # last: a crash before this forces a rebuild
    return engine_path


_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32}


class TensorRTBackend:
    """Runs a serialized engine on a CUDA device; inputs and outputs are torch CUDA tensors."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, device: str | torch.device | None = None):
        trt = require_tensorrt(f"TensorRT engine {engine_path}")
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {engine_path}")
        self.device = _cuda_device(device)
        side = read_sidecar(engine_path)
        spec: EngineSpec = side["spec"]
        self.spec, self.engine_path, self.onnx_path = spec, engine_path, Path(side["onnx_path"])
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(self._trt_logger)
            self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise ValueError(
                    f"{engine_path}: TensorRT {trt.__version__} could not deserialize this engine"
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [
            (n, list(self.engine.get_tensor_shape(n)), str(self.engine.get_tensor_dtype(n)))
            for n in names
            if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        inputs = [(n, [d if d > 0 else "batch" for d in s], t) for n, s, t in inputs]
        hw, batch = check_graph_io(str(engine_path), inputs, outputs)
        self.info = ModelInfo.from_metadata(side["metadata"], str(engine_path), self.name, hw)
        self.max_batch = batch if batch is not None else spec.max_shape[0]
        self._out_dtypes = {n: _TORCH_DTYPES[self.engine.get_tensor_dtype(n).name] for n in OUTPUT_NAMES}

    @classmethod
    def from_onnx(
        cls,
        onnx_path: str | Path,
        fp16: bool = False,
        workspace_gb: float = DEFAULT_WORKSPACE_GB,
        device: str | torch.device | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> TensorRTBackend:
        """Build or reuse the cached engine of `onnx_path`; rebuild once if it will not deserialize."""
        path = ensure_engine(onnx_path, fp16, workspace_gb, device=device, max_batch=max_batch)
        try:
            return cls(path, device)
        except ValueError as exc:
            logger.warning("%s; rebuilding it from %s", exc, onnx_path)
            path = ensure_engine(onnx_path, fp16, workspace_gb, path, device, max_batch, force=True)
            return cls(path, device)

    @classmethod
    def from_engine(
        cls, engine_path: str | Path, device: str | torch.device | None = None
    ) -> TensorRTBackend:
        """Load an engine; rebuild it from its recorded ONNX file when it was built for another TensorRT
        version or GPU (or fails to deserialize) and that ONNX file is still there."""
        trt = require_tensorrt(f"TensorRT engine {engine_path}")
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {engine_path}")
        side = read_sidecar(engine_path)
        spec: EngineSpec = side["spec"]
        dev = _cuda_device(device)
        here = dataclasses.replace(
            spec, tensorrt_version=trt.__version__, gpu_name=torch.cuda.get_device_name(dev)
        )
        onnx_path = Path(side["onnx_path"])
        fp16, max_batch = spec.precision == "fp16", spec.max_shape[0]
        if here != spec:
            why = "; ".join(here.differences(spec))
            if not onnx_path.is_file():
                raise ValueError(
                    f"{engine_path}: built for another machine ({why}) and its ONNX file {onnx_path} "
                    "is gone; "
                    "export the engine again on this machine (`adu-depth export --engine`)"
                )
            logger.warning(
                "%s was built for another machine (%s); rebuilding from %s", engine_path, why, onnx_path
            )
            ensure_engine(
                onnx_path, fp16, engine_path=engine_path, device=dev, max_batch=max_batch, force=True
            )
        try:
            return cls(engine_path, dev)
        except ValueError:
            if not onnx_path.is_file():
                raise
            logger.warning("%s does not deserialize; rebuilding it from %s", engine_path, onnx_path)
            ensure_engine(
                onnx_path, fp16, engine_path=engine_path, device=dev, max_batch=max_batch, force=True
            )
            return cls(engine_path, dev)

    def run_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,H,W) float32 CUDA tensor → (depth, sigma) (B,1,H,W) float32 CUDA tensors (current stream)."""
        if x.ndim != 4 or x.shape[0] > self.max_batch:
            raise ValueError(f"engine input must be (B≤{self.max_batch}, 3, H, W), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32).contiguous()
        with torch.cuda.device(self.device):
            ctx = self.context
            if not ctx.set_input_shape(INPUT_NAME, tuple(x.shape)):
                raise ValueError(f"engine {self.engine_path} does not accept input shape {tuple(x.shape)}")
            ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
            outputs = {}
            for name in OUTPUT_NAMES:
                shape = tuple(ctx.get_tensor_shape(name))
                out = torch.empty(shape, dtype=self._out_dtypes[name], device=self.device)
                ctx.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
            stream = torch.cuda.current_stream(self.device)
            if not ctx.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for {self.engine_path}")
        return outputs["depth"].float(), outputs["sigma"].float()

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, sigma = self.run_torch(torch.from_numpy(x).to(self.device))
        return depth.cpu().numpy(), sigma.cpu().numpy()
