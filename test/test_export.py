"""ONNX export of the student: parity with PyTorch at two sizes, metadata, the ONNX Runtime backend, and
clear errors for teachers, broken graphs and failed checks (no file left behind)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from adu_depth_core import __version__
from adu_depth_core.checkpoint import save_checkpoint
from adu_depth_core.cli import main
from adu_depth_core.config import to_dict
from adu_depth_core.fileio import file_sha256
from adu_depth_core.models import ModelConfig, build_student, build_teacher
from adu_depth_core.runtime import DepthEstimator, InferenceGraph, export_onnx, load_student, read_onnx_info
from adu_depth_core.runtime import export as export_module
from adu_depth_core.runtime.tensorrt_backend import tensorrt_available

FOCAL = 180.0


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(preset="nano", input_size=(64, 192), max_depth=60.0, refine=True)
    student = build_student(cfg)
    with torch.no_grad():  # a full-resolution refinement that does something, so the graph's copy is checked
        student.refine.residual.weight.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    payload = {"stage": "student", "model_config": to_dict(cfg), "model": student.state_dict()}
    save_checkpoint(path, {**payload, "meta": {"focal_px": FOCAL}})
    return path


@pytest.fixture(scope="module")
def onnx_fixed(student_ckpt, tmp_path_factory):
    """64x192, batch 1, written through the `adu-depth export` command."""
    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    assert main(["export", "--model", str(student_ckpt), "--onnx", str(out), "--size", "64x192"]) == 0
    return out


@pytest.fixture(scope="module")
def onnx_dynamic(student_ckpt, tmp_path_factory):
    """96x320 (another size than the checkpoint's), symbolic batch."""
    out = tmp_path_factory.mktemp("onnx") / "student_dyn.onnx"
    assert export_onnx(student_ckpt, out, size=(96, 320), dynamic_batch=True) == out
    return out


def ort_run(path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["depth", "sigma"], {"image": x})


def torch_run(ckpt, size, x: np.ndarray) -> list[np.ndarray]:
    model, _ = load_student(ckpt, size)
    with torch.no_grad():
        return [t.numpy() for t in InferenceGraph(model)(torch.from_numpy(x))]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("which, size, batch", [("fixed", (64, 192), 1), ("dynamic", (96, 320), 3)])
def test_onnx_matches_pytorch_on_random_inputs(which, size, batch, onnx_fixed, onnx_dynamic, student_ckpt):
    path = onnx_fixed if which == "fixed" else onnx_dynamic
    x = np.random.default_rng(7).random((batch, 3, *size), dtype=np.float32)
    got, ref = ort_run(path, x), torch_run(student_ckpt, size, x)
    for g, r in zip(got, ref):
        assert g.shape == r.shape == (batch, 1, *size)
        assert rel_err(g, r) <= 1e-4
    depth, sigma = got
    assert (depth > 0).all() and (depth <= 60.0).all() and (sigma > 0).all()


def test_graph_contract_and_metadata(onnx_fixed, onnx_dynamic, student_ckpt):
    for path, size, batch in ((onnx_fixed, "64x192", 1), (onnx_dynamic, "96x320", "batch")):
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        (inp,) = proto.graph.input
        dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
        assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert dims == [batch, 3, *map(int, size.split("x"))]
        assert [o.name for o in proto.graph.output] == ["depth", "sigma"]
        meta = {p.key: p.value for p in proto.metadata_props}
        opset = export_module.onnx_opset(proto)
        assert opset >= 17 and meta["opset"] == str(opset)  # the opset actually written
        assert meta["preset"] == "nano" and meta["input_size"] == size and meta["stage"] == "student"
        assert float(meta["max_depth"]) == 60.0 and float(meta["focal_px"]) == FOCAL
        assert meta["source_sha256"] == file_sha256(student_ckpt)
        assert meta["adu_depth_version"] == __version__ and "[0,1]" in meta["input_format"]
        info, fixed = read_onnx_info(path)
        assert info.input_hw == tuple(map(int, size.split("x"))) and info.focal_px == FOCAL
        assert fixed == (1 if batch == 1 else None)


def test_export_command_errors_before_exporting(student_ckpt, tmp_path, capsys):
    base = ["export", "--model", str(student_ckpt), "--onnx", str(tmp_path / "x.onnx")]
    assert main([*base, "--size", "64x200"]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert main([*base, "--fp16"]) == 2
    assert "--engine" in capsys.readouterr().err
    assert main([*base, "--engine", str(tmp_path / "x.bin")]) == 2
    assert "expected a file ending in" in capsys.readouterr().err
    assert main(["export", "--model", str(student_ckpt), "--onnx", str(student_ckpt)]) == 2
    assert "is an input" in capsys.readouterr().err
    assert main(["export", "--model", str(student_ckpt), "--onnx", str(tmp_path / "x.pt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_checkpoint_and_onnx_estimators_agree(student_ckpt, onnx_fixed):
    from_ckpt = DepthEstimator.from_path(student_ckpt, device="cpu")
    from_onnx = DepthEstimator.from_path(onnx_fixed, device="cpu")
    assert (from_ckpt.backend_name, from_onnx.backend_name) == ("torch", "onnxruntime")
    for key in ("input_hw", "focal_px", "max_depth", "preset", "source_sha256"):
        assert getattr(from_ckpt.info, key) == getattr(from_onnx.info, key)
    rng = np.random.default_rng(8)
    K = np.array([[150.0, 0, 150], [0, 150, 50], [0, 0, 1]])
    for shape in ((99, 301, 3), (64, 192), (80, 250, 4)):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        for policy_pair in ((from_ckpt, from_onnx),):
            (d1, s1), (d2, s2) = (est.estimate(frame, K) for est in policy_pair)
            assert rel_err(d2, d1) <= 1e-4 and rel_err(s2, s1) <= 1e-4


def test_fixed_batch_graph_is_called_per_frame_dynamic_once(onnx_fixed, onnx_dynamic, monkeypatch):
    rng = np.random.default_rng(9)
    frames = [rng.integers(0, 256, (100, 330, 3), dtype=np.uint8) for _ in range(3)]
    for path, expected in ((onnx_fixed, [1, 1, 1]), (onnx_dynamic, [3])):
        est = DepthEstimator.from_path(path, backend="onnxruntime")
        singles = [est.estimate(f)[0] for f in frames]
        calls: list[int] = []
        run = est.backend.run
        monkeypatch.setattr(
            est.backend, "run", lambda x, run=run, calls=calls: calls.append(len(x)) or run(x)
        )
        depths, _ = est.estimate_batch(frames)
        assert calls == expected
        for a, b in zip(depths, singles):
            np.testing.assert_allclose(a, b, rtol=1e-5)


def test_teacher_is_refused(tmp_path):
    cfg = ModelConfig(preset="nano", input_size=(64, 192))
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(
        teacher, {"stage": "teacher", "model_config": to_dict(cfg), "model": build_teacher(cfg).state_dict()}
    )
    with pytest.raises(ValueError, match="only the monocular student is deployed"):
        export_onnx(teacher, tmp_path / "t.onnx", size=(64, 192))
    with pytest.raises(ValueError, match="only the monocular student is deployed"):
        export_onnx(build_teacher(cfg), tmp_path / "t.onnx", size=(64, 192))
    assert not (tmp_path / "t.onnx").exists()


class TinyStudent(nn.Module):
    """A cheap graph with the student's interface, for the export error paths."""

    stage = "student"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.inference_only = False

    def forward(self, x):
        y = self.conv(x)
        return torch.sigmoid(y[:, :1]) * 80.0, y[:, 1:]


def test_failed_parity_check_writes_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    assert export_onnx(TinyStudent(), out, size=(32, 64), focal_px=100.0) == out
    before = out.read_bytes()
    assert ort_run(out, np.zeros((1, 3, 32, 64), np.float32))[0].shape == (1, 1, 32, 64)
    monkeypatch.setattr(export_module, "relative_error", lambda a, b: 3e-3)
    with pytest.raises(
        RuntimeError, match=r"does not reproduce PyTorch.*depth 3.00e-03.*nothing was written"
    ):
        export_onnx(TinyStudent(), out, size=(32, 64))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp files either


def test_export_argument_errors(tmp_path, student_ckpt):
    with pytest.raises(ValueError, match="must end in .onnx"):
        export_onnx(TinyStudent(), tmp_path / "m.pt", size=(32, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(TinyStudent(), tmp_path / "m.onnx", size="100x200")
    with pytest.raises(ValueError, match="opset 16 is too old"):
        export_onnx(TinyStudent(), tmp_path / "m.onnx", size=(32, 64), opset=16)
    with pytest.raises(FileNotFoundError):
        export_onnx(tmp_path / "none.pt", tmp_path / "m.onnx", size=(32, 64))


def _foreign_graph(path, name="x", shape=(1, 3, 64, 192)):
    inp = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape))
    out = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(shape))
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", [name], ["y"])], "foreign", [inp], [out]
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_with_unexpected_io_is_refused(tmp_path):
    _foreign_graph(tmp_path / "foreign.onnx")
    for call in (lambda p: DepthEstimator.from_path(p, backend="onnxruntime"), read_onnx_info):
        with pytest.raises(
            ValueError, match=r"foreign.onnx: expected one input 'image'.*found inputs \[\('x'"
        ):
            call(tmp_path / "foreign.onnx")


def test_missing_and_corrupt_onnx(tmp_path, onnx_fixed):
    with pytest.raises(FileNotFoundError, match="gone.onnx"):
        DepthEstimator.from_path(tmp_path / "gone.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_fixed.read_bytes()[:5000])  # truncated
    with pytest.raises(ValueError, match="bad.onnx: not a loadable ONNX model"):
        DepthEstimator.from_path(bad, backend="onnxruntime")
    with pytest.raises(ValueError, match="bad.onnx: not a readable ONNX model"):
        read_onnx_info(bad)
    with pytest.raises(ValueError, match="backend 'torch' needs a checkpoint"):
        DepthEstimator.from_path(onnx_fixed, backend="torch")


@pytest.mark.skipif(tensorrt_available(), reason="checks the message shown when TensorRT is missing")
def test_tensorrt_backend_without_tensorrt_is_a_clear_error(onnx_fixed):
    with pytest.raises(RuntimeError, match="TensorRT|CUDA"):
        DepthEstimator.from_path(onnx_fixed, backend="tensorrt")
    est = DepthEstimator.from_path(onnx_fixed)  # auto falls back to ONNX Runtime
    assert est.backend_name == "onnxruntime"


def test_model_info_metadata_round_trip_and_checks():
    from adu_depth_core.runtime import ModelInfo

    info = ModelInfo("m.pt", "onnx", (352, 1216), 80.0, 721.5377, "swin_t", "student", "ab" * 32, 18, "0.1.0")
    meta = info.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    back = ModelInfo.from_metadata(meta, "m.onnx", "onnxruntime", (352, 1216))
    assert back == ModelInfo(
        "m.onnx", "onnxruntime", (352, 1216), 80.0, 721.5377, "swin_t", "student", "ab" * 32, 18, "0.1.0"
    )
    assert ModelInfo.from_metadata({}, "x.onnx", "onnxruntime", (64, 192)).focal_px is None  # foreign graph
    with pytest.raises(ValueError, match="disagrees with the graph input 64x192"):
        ModelInfo.from_metadata(meta, "m.onnx", "onnxruntime", (64, 192))
    with pytest.raises(ValueError, match="focal_px='wide' is not a number"):
        ModelInfo.from_metadata({**meta, "focal_px": "wide"}, "m.onnx", "onnxruntime", (352, 1216))
    with pytest.raises(ValueError, match="only the monocular student"):
        ModelInfo.from_metadata({**meta, "stage": "teacher"}, "m.onnx", "onnxruntime", (352, 1216))


def test_export_says_what_a_wrong_model_file_is_and_guards_its_outputs(
    student_ckpt, onnx_fixed, tmp_path, capsys
):
    out = tmp_path / "x.onnx"
    assert main(["export", "--model", str(onnx_fixed), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "it is an ONNX model (what `adu-depth export` writes), not a checkpoint" in err[0]
    assert "weights_only" not in err[0] and not out.exists()
    full = tmp_path / "full.pt"
    torch.save(torch.nn.Linear(2, 2), full)  # a pickled module: never unpickled
    assert main(["export", "--model", str(full), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Python objects beyond tensors" in err and "weights_only" not in err
    out.write_bytes(b"old")
    assert main(["export", "--model", str(student_ckpt), "--onnx", str(out)]) == 2
    assert f"--onnx {out} already exists (pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"old"
    assert main(["export", "--model", str(student_ckpt), "--onnx", str(tmp_path)]) == 2
    assert "is a folder; expected a file path" in capsys.readouterr().err
