"""Config parsing, checkpoint I/O, geometry and CLI dispatch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Literal

import numpy as np
import pytest
import torch

from adu_depth_core import checkpoint, geometry
from adu_depth_core.config import apply_overrides, from_dict, load_config, parse_size, to_dict


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass
class Outer:
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    steps: int = 10
    path: str | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_from_dict_fills_nested_and_coerces():
    cfg = from_dict(Outer, {"steps": 5, "inner": {"lr": 1, "betas": [0.5, 0.6]}})
    assert cfg.steps == 5 and cfg.inner.lr == 1.0 and cfg.inner.betas == (0.5, 0.6)
    assert to_dict(cfg)["inner"] == {"lr": 1.0, "betas": [0.5, 0.6]}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stepz": 1}, "unknown config key(s) ['stepz']"),
        ({"inner": {"lrr": 1}}, "in 'inner'"),
        ({"steps": "ten"}, "steps: expected an integer"),
        ({"mode": "c"}, "mode: expected one of ['a', 'b']"),
        ({"inner": {"betas": [1, 2, 3]}}, "inner.betas: expected 2 values"),
    ],
)
def test_from_dict_rejects_bad_input_naming_the_key(data, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        from_dict(Outer, data)


def test_overrides_and_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 3\ninner:\n  lr: 0.1\n")
    cfg = load_config(Outer, path, ["inner.lr=0.5", "path=/tmp/x", "mode=b"])
    assert (cfg.steps, cfg.inner.lr, cfg.path, cfg.mode) == (3, 0.5, "/tmp/x", "b")
    with pytest.raises(ValueError, match="expected key=value"):
        apply_overrides({}, ["inner.lr"])
    with pytest.raises(ValueError, match="'steps' is not a section"):
        apply_overrides({"steps": 1}, ["steps.x=1"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_parse_size():
    assert parse_size("352x1216") == (352, 1216)
    assert parse_size([96, 320]) == (96, 320)
    for bad in ("352", "axb", "0x32", "352x"):
        with pytest.raises(ValueError, match="HxW|positive"):
            parse_size(bad)


def test_checkpoint_round_trip_and_errors(tmp_path):
    path = tmp_path / "ck.pt"
    payload = {"stage": "teacher", "model_config": {"preset": "nano"}, "model": {"w": torch.ones(2)}}
    checkpoint.save_checkpoint(path, payload)
    back = checkpoint.load_checkpoint(path)
    assert back["stage"] == "teacher" and torch.equal(back["model"]["w"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp")), "no temp file left behind"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "junk.pt")
    torch.save({"some": "dict"}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an adu_depth checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="stage must be one of"):
        checkpoint.save_checkpoint(path, {**payload, "stage": "pupil"})


def test_intrinsics_follow_resize_and_crop():
    K = np.array([[700.0, 0, 600.0], [0, 700.0, 180.0], [0, 0, 1]])
    K2 = geometry.scale_intrinsics(K, 0.5, 0.5)
    assert K2[0, 0] == 350 and K2[0, 2] == pytest.approx((600.5) * 0.5 - 0.5)
    K3 = geometry.crop_intrinsics(K, top=23, left=13)
    assert (K3[0, 2], K3[1, 2]) == (587.0, 157.0)
    assert geometry.kb_crop_box(375, 1242) == (23, 13, 352, 1216)
    with pytest.raises(ValueError, match="smaller than the KB crop"):
        geometry.kb_crop_box(300, 1242)
    with pytest.raises(ValueError, match="not calibrated"):
        geometry.check_intrinsics(np.zeros((3, 3)))


def test_backproject_project_round_trip_through_a_rigid_transform():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 15.5], [0, 0, 1]])
    depth = np.zeros((32, 64), np.float32)
    depth[::3, ::5] = np.linspace(2, 30, depth[::3, ::5].size).reshape(depth[::3, ::5].shape)
    pts, _ = geometry.backproject_depth(depth, K)
    R = geometry.quaternion_to_matrix(*geometry.matrix_to_quaternion(
        geometry.quaternion_to_matrix(0.1, -0.2, 0.05, 0.97)))
    T = geometry.rigid_transform(R, [0.3, -0.1, 0.2])
    back = geometry.transform_points(np.linalg.inv(T), geometry.transform_points(T, pts))
    np.testing.assert_allclose(geometry.project_points(back, K, 32, 64), depth, atol=1e-5)


def test_cli_lists_every_command():
    cmd = [sys.executable, "-m", "adu_depth_core.cli", "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0 and "synth" in out.stdout and "bag-eval" in out.stdout


# ---- paths: output checks, confinement, OS errors as one line ------------------------------------------


@pytest.mark.parametrize(
    "rel, ok",
    [
        ("a/b.png", True),
        ("a/../b.png", True),  # stays inside
        ("./x", True),
        ("../outside.png", False),
        ("a/../../outside.png", False),
        ("/etc/passwd", False),
        ("..\\..\\win.png", False),
        ("", False),
    ],
)
def test_confine(rel, ok):
    from adu_depth_core.paths import confine

    if ok:
        assert confine(rel, "split.txt:3", "the root") == rel
    else:
        expected = r"split.txt:3: path .* must be relative and stay inside the root"
        with pytest.raises(ValueError, match=expected):
            confine(rel, "split.txt:3", "the root")


def test_output_checks(tmp_path):
    from adu_depth_core.paths import check_output_dir, check_output_file

    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a folder; expected a file path"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(FileExistsError, match="already exists"):
        check_output_file(a_file, "--json")
    assert check_output_file(a_file, "--json", overwrite=True) == a_file
    with pytest.raises(ValueError, match="is an input"):
        check_output_file(a_file, "--json", overwrite=True, inputs=[a_file])
    with pytest.raises(ValueError, match="is a file, so the folder cannot be created there"):
        check_output_file(a_file / "sub" / "m.json", "--json")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        check_output_dir(a_file, "--out")
    with pytest.raises(ValueError) as info:
        check_output_dir(a_file / "b", "--out-bag")
    assert str(info.value) == (
        f"--out-bag {a_file / 'b'}: {a_file} is a file, so the folder cannot be created there"
    )
    with pytest.raises(FileExistsError, match=r"already holds files \(choose a new or empty folder\)"):
        check_output_dir(tmp_path, "--out", can_overwrite=False)
    with pytest.raises(ValueError, match="lies inside the input"):
        check_output_dir(tmp_path / "new" / "vis", "--save-vis", inputs=[tmp_path / "new"])
    assert check_output_dir(tmp_path / "new" / "vis", "--save-vis") == tmp_path / "new" / "vis"
    assert not (tmp_path / "new").exists()  # checks create nothing


def test_os_errors_become_one_line_naming_the_path(tmp_path, capsys):
    import errno

    from adu_depth_core.cli import main
    from adu_depth_core.paths import naming, os_error_line

    with pytest.raises(OSError) as info, naming(tmp_path / "out.json"):
        raise OSError(errno.ENOSPC, "No space left on device")  # a failed write names no file
    assert os_error_line(info.value) == (
        f"{tmp_path / 'out.json'}: no space left on the device; free space or choose another output location"
    )
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "/x")) == "/x: permission denied"
    assert os_error_line(FileExistsError("a message of our own")) == "a message of our own"
    # demo: a --workdir that is a file fails in one line before any stage runs
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["demo", "--workdir", str(a_file), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"adu-depth demo: error: --workdir {a_file} is a file; expected a folder"]


def test_load_checkpoint_says_what_the_file_is(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x08\x12\x07pytorch")
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.nn.Linear(2, 2), legacy, _use_new_zipfile_serialization=False)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, what in (
        (onnx_file, "it is an ONNX model"),
        (legacy, "Python objects beyond tensors"),
        (empty, "the file is empty"),
    ):
        with pytest.raises(ValueError) as info:
            checkpoint.load_checkpoint(path)
        text = str(info.value)
        assert what in text and "expected an adu_depth checkpoint" in text and "weights_only" not in text


# --- the bottom floor: file I/O, vocabulary, depth validity -------------------------------------------


def test_bottom_floor_modules_import_without_torch():
    """Writers and the shared vocabulary must not pull in torch (18 modules wrote files through the
    torch-heavy checkpoint module before `fileio` existed)."""
    modules = "adu_depth_core.fileio, adu_depth_core.vocab, adu_depth_core.depth_traits, adu_depth_ros.params"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_atomic_writes_leave_the_final_file_or_nothing(tmp_path):
    from adu_depth_core import fileio

    target = tmp_path / "sub" / "out.json"
    fileio.atomic_write_bytes(target, b"first")
    fileio.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]  # no temp file left
    fileio.atomic_copy(target, tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_bytes() == b"second"
    assert fileio.file_sha256(target) == "16367aacb67a4a017c8da8ab95682ccb390863780f7114dda0a0e0c55644c7c4"
    stale = tmp_path / ".ckpt_1.pt.abcd.tmp"
    stale.write_bytes(b"half")
    assert fileio.remove_stale_temps(tmp_path, ("ckpt_*.pt",)) == [stale] and not stale.exists()

    with pytest.raises(RuntimeError, match="boom"), fileio.atomic_output_dir(tmp_path / "tree") as root:
        (root / "a.txt").write_text("x")
        raise RuntimeError("boom")
    assert not (tmp_path / "tree").exists() and not list(tmp_path.glob(".tree.*"))
    with fileio.atomic_output_dir(tmp_path / "tree") as root:
        (root / "a.txt").write_text("x")
    assert (tmp_path / "tree" / "a.txt").read_text() == "x"
    with pytest.raises(FileExistsError, match="already holds data"):
        with fileio.atomic_output_dir(tmp_path / "tree"):
            pass


def test_vocabulary_tuples_are_the_literal_types():
    from typing import get_args

    from adu_depth_core import vocab
    from adu_depth_core.evaluation.crops import CROPS, CropName
    from adu_depth_core.runtime import BACKENDS, POLICIES
    from adu_depth_ros import params

    assert vocab.SPLITS == get_args(vocab.Split) == ("train", "val", "test")
    assert BACKENDS is vocab.BACKENDS == params.BACKENDS == ("auto", "tensorrt", "onnxruntime", "torch")
    assert POLICIES is vocab.POLICIES == params.POLICIES == ("resize", "kb_crop")
    assert CROPS == get_args(CropName) == ("none", "garg", "eigen", "garg_kb", "eigen_kb")
    assert vocab.check_split("val") == "val"
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val', 'test'\], got 'dev'"):
        vocab.check_split("dev")


def test_depth_traits_say_what_is_valid_and_convert_units():
    from adu_depth_core.depth_traits import FLOAT_M, TRAITS, UINT16_MM, uint16_png, valid_depth, valid_sigma

    metres = np.array([[1.25, 0.0, -2.0], [np.nan, np.inf, 70.0]], np.float32)
    valid = np.array([[True, False, False], [False, False, True]])
    np.testing.assert_array_equal(valid_depth(metres), valid)
    np.testing.assert_array_equal(FLOAT_M.to_metres(metres), np.where(valid, metres, 0))
    wire = FLOAT_M.from_metres(metres)
    assert wire.dtype == np.float32 and wire.flags.c_contiguous
    np.testing.assert_array_equal(np.isnan(wire), ~valid)

    mm = UINT16_MM.from_metres(metres)
    assert mm.dtype == np.uint16 and mm.tolist() == [[1250, 0, 0], [0, 0, 0]]  # 70 m > 65.535 m: invalid
    back = UINT16_MM.to_metres(np.array([[0, 1500, 65535]], np.uint16))
    assert back.dtype == np.float32 and back.tolist() == [[0.0, 1.5, np.float32(65.535)]]
    assert TRAITS == {"32FC1": FLOAT_M, "16UC1": UINT16_MM}
    png = uint16_png(256.0)
    assert png.from_metres(np.array([[0.0, 2.5]])).tolist() == [[0, 640]]
    assert png.to_metres(np.array([[0, 640]], np.uint16)).tolist() == [[0.0, 2.5]]
    np.testing.assert_array_equal(
        valid_sigma(np.array([0.0, 0.5, -0.1, np.nan, np.inf])), [True, True, False, False, False]
    )
