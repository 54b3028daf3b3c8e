"""TensorRT backend. The engine-cache key, the sidecar and the rebuild decisions are tested everywhere;
building and running engines needs `tensorrt` and a CUDA GPU and is skipped cleanly without them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from adu_depth_core.runtime import DepthEstimator, ModelInfo
from adu_depth_core.runtime import tensorrt_backend as trtb

SPEC = trtb.EngineSpec(
    onnx_sha256="ab" * 32,
    precision="fp32",
    min_shape=(1, 3, 352, 1216),
    opt_shape=(1, 3, 352, 1216),
    max_shape=(1, 3, 352, 1216),
    tensorrt_version="10.3.0",
    gpu_name="NVIDIA H100 80GB HBM3",
)
INFO = ModelInfo(
    source="s.onnx", backend="onnx", input_hw=(352, 1216), max_depth=80.0, focal_px=721.5, opset=18
)


# ---- key, sidecar and rebuild logic (no TensorRT needed) ---------------------------------------------


def test_key_is_stable_and_covers_every_field():
    assert SPEC.key() == dataclasses.replace(SPEC).key()
    assert len(SPEC.key()) == 64
    changes = {
        "onnx_sha256": "cd" * 32,
        "precision": "fp16",
        "min_shape": (2, 3, 352, 1216),
        "opt_shape": (2, 3, 352, 1216),
        "max_shape": (8, 3, 352, 1216),
        "tensorrt_version": "10.4.0",
        "gpu_name": "NVIDIA A100",
    }
    assert set(changes) == {f.name for f in dataclasses.fields(trtb.EngineSpec)}
    keys = {dataclasses.replace(SPEC, **{k: v}).key() for k, v in changes.items()}
    assert len(keys) == len(changes) and SPEC.key() not in keys


def test_make_spec_shapes_and_hash():
    fixed = trtb.make_spec(b"graph", (352, 1216), 1, False, "10.3.0", "gpu")
    assert fixed.min_shape == fixed.opt_shape == fixed.max_shape == (1, 3, 352, 1216)
    assert fixed.precision == "fp32"
    dynamic = trtb.make_spec(b"graph", (352, 1216), None, True, "10.3.0", "gpu", max_batch=4)
    assert (dynamic.min_shape[0], dynamic.opt_shape[0], dynamic.max_shape[0]) == (1, 1, 4)
    assert dynamic.precision == "fp16"
    assert fixed.onnx_sha256 != trtb.make_spec(b"graph2", (352, 1216), 1, False, "10.3.0", "gpu").onnx_sha256
    with pytest.raises(ValueError, match="max_batch"):
        trtb.make_spec(b"graph", (352, 1216), None, False, "10.3.0", "gpu", max_batch=0)


def test_cached_engine_lives_next_to_the_onnx(tmp_path):
    path = trtb.cached_engine_path(tmp_path / "student.onnx", SPEC)
    assert path.parent == tmp_path and path.name == f"student.fp32.{SPEC.key()[:12]}.engine"
    other = trtb.cached_engine_path(tmp_path / "student.onnx", dataclasses.replace(SPEC, gpu_name="other"))
    assert other != path
    assert trtb.sidecar_path(path).name == path.name + ".json"


def test_sidecar_round_trip_and_rebuild_reasons(tmp_path):
    engine = tmp_path / "m.engine"
    assert trtb.rebuild_reason(engine, SPEC) == "no cached engine"
    engine.write_bytes(b"serialized engine")
    assert "no sidecar" in trtb.rebuild_reason(engine, SPEC)
    trtb.write_sidecar(engine, SPEC, INFO, tmp_path / "m.onnx")
    assert trtb.rebuild_reason(engine, SPEC) is None
    side = trtb.read_sidecar(engine)
    assert side["spec"] == SPEC and side["onnx_path"] == str((tmp_path / "m.onnx").resolve())
    back = ModelInfo.from_metadata(side["metadata"], str(engine), "tensorrt", (352, 1216))
    assert (back.focal_px, back.max_depth, back.opset) == (721.5, 80.0, 18)
    # a new TensorRT or another GPU changes the key: rebuild, saying what changed
    newer = dataclasses.replace(SPEC, tensorrt_version="10.5.0", gpu_name="NVIDIA L4")
    reason = trtb.rebuild_reason(engine, newer)
    assert "engine key changed" in reason and "10.3.0 → 10.5.0" in reason and "NVIDIA L4" in reason
    assert "onnx_sha256" in trtb.rebuild_reason(engine, dataclasses.replace(SPEC, onnx_sha256="00" * 32))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: "{ not json",
        lambda d: json.dumps({**d, "format": "other/1"}),
        lambda d: json.dumps({**d, "key": "0" * 64}),
        lambda d: json.dumps({**d, "spec": {**d["spec"], "extra": 1}}),
        lambda d: json.dumps({k: v for k, v in d.items() if k != "metadata"}),
    ],
)
def test_damaged_sidecar_means_rebuild(tmp_path, mutate):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    side = trtb.write_sidecar(engine, SPEC, INFO, tmp_path / "m.onnx")
    side.write_text(mutate(json.loads(side.read_text())))
    with pytest.raises(ValueError, match="not a valid engine sidecar"):
        trtb.read_sidecar(engine)
    assert "not a valid engine sidecar" in trtb.rebuild_reason(engine, SPEC)


@pytest.mark.skipif(trtb.tensorrt_available(), reason="checks the message shown when TensorRT is missing")
def test_engine_without_tensorrt_is_a_clear_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(RuntimeError, match="TensorRT Python package|CUDA GPU"):
        DepthEstimator.from_path(engine)
    with pytest.raises(ValueError, match="only backend 'tensorrt'"):
        DepthEstimator.from_path(engine, backend="onnxruntime")


# ---- on a GPU with TensorRT ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_onnx(tmp_path_factory):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT tests need a CUDA GPU")
    from adu_depth_core.checkpoint import save_checkpoint
    from adu_depth_core.config import to_dict
    from adu_depth_core.models import ModelConfig, build_student
    from adu_depth_core.runtime import export_onnx

    torch.manual_seed(0)
    cfg = ModelConfig(preset="nano", input_size=(64, 192))
    folder = tmp_path_factory.mktemp("trt")
    ckpt = folder / "student.pt"
    payload = {"stage": "student", "model_config": to_dict(cfg), "model": build_student(cfg).state_dict()}
    save_checkpoint(ckpt, {**payload, "meta": {"focal_px": 180.0}})
    return export_onnx(ckpt, folder / "student.onnx", size=(64, 192), dynamic_batch=True)


def _frames(n=3):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (100 + 10 * i, 300, 3), dtype=np.uint8) for i in range(n)]


@pytest.mark.gpu
def test_engine_matches_onnxruntime_and_is_cached(gpu_onnx):
    reference = DepthEstimator.from_path(gpu_onnx, backend="onnxruntime", device="cpu")
    est = DepthEstimator.from_path(gpu_onnx)  # auto: TensorRT on a GPU machine
    assert est.backend_name == "tensorrt" and est.info.focal_px == 180.0
    engine = est.backend.engine_path
    assert engine.parent == gpu_onnx.parent and trtb.sidecar_path(engine).is_file()
    K = np.array([[150.0, 0, 150], [0, 150, 50], [0, 0, 1]])
    depths, sigmas = est.estimate_batch(_frames(), [K] * 3)
    ref_d, ref_s = reference.estimate_batch(_frames(), [K] * 3)
    for a, b in zip(depths + sigmas, ref_d + ref_s):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3 * np.abs(b).max()
    mtime = engine.stat().st_mtime_ns
    again = DepthEstimator.from_path(gpu_onnx, backend="tensorrt")
    assert again.backend.engine_path == engine and engine.stat().st_mtime_ns == mtime  # reused, not rebuilt


@pytest.mark.gpu
def test_corrupt_or_foreign_engine_is_rebuilt(gpu_onnx):
    est = DepthEstimator.from_path(gpu_onnx, backend="tensorrt")
    engine = est.backend.engine_path
    frame = _frames(1)[0]
    expected, _ = est.estimate(frame)
    engine.write_bytes(b"garbage")  # deserialisation fails → rebuilt from the recorded ONNX
    rebuilt = DepthEstimator.from_path(engine)
    np.testing.assert_allclose(rebuilt.estimate(frame)[0], expected, rtol=1e-4)
    side = trtb.read_sidecar(engine)
    foreign = dataclasses.replace(side["spec"], gpu_name="some other GPU")
    trtb.write_sidecar(engine, foreign, rebuilt.info, gpu_onnx)
    DepthEstimator.from_path(engine)  # built for another GPU → rebuilt for this one
    assert trtb.read_sidecar(engine)["spec"].gpu_name == torch.cuda.get_device_name()


@pytest.mark.gpu
def test_fp16_engine_is_close(gpu_onnx):
    fp32 = DepthEstimator.from_path(gpu_onnx, backend="tensorrt")
    fp16 = DepthEstimator.from_path(gpu_onnx, backend="tensorrt", fp16=True)
    assert fp16.backend.spec.precision == "fp16" and fp16.backend.engine_path != fp32.backend.engine_path
    frame = _frames(1)[0]
    a, b = fp16.estimate(frame)[0], fp32.estimate(frame)[0]
    assert np.abs(a - b).max() <= 2e-2 * np.abs(b).max()


def test_tensorrt_needs_a_cuda_device(tmp_path):
    with pytest.raises(ValueError, match="runs on a CUDA device"):
        trtb.ensure_engine(tmp_path / "m.onnx", device="cpu")
