"""DepthEstimator on the PyTorch backend: input formats, geometry of the round trip, batching, errors, and
the `predict` / `bench` commands. ONNX-specific tests are in test_export.py, TensorRT in test_tensorrt.py."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from adu_depth_core.checkpoint import save_checkpoint
from adu_depth_core.cli import main
from adu_depth_core.config import to_dict
from adu_depth_core.data.image_io import read_depth_png
from adu_depth_core.models import ModelConfig, build_student, build_teacher
from adu_depth_core.runtime import DepthEstimator, ModelInfo, TorchBackend
from adu_depth_core.runtime.preprocess import (
    check_image,
    plan_input,
    prepare_batch,
    prepare_batch_torch,
    restore,
    restore_torch,
)

NET = (64, 192)
FOCAL = 180.0


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(preset="nano", input_size=NET)
    model = build_student(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    save_checkpoint(
        path,
        {
            "stage": "student",
            "model_config": to_dict(cfg),
            "model": model.state_dict(),
            "meta": {"focal_px": FOCAL},
        },
    )
    return path


@pytest.fixture(scope="module")
def real(student_ckpt):
    return DepthEstimator.from_path(student_ckpt, backend="auto", device="cpu")


# ---- a transparent stand-in: depth = 1 + 9 · brightness -------------------------------------------


class BrightnessDepth(nn.Module):
    stage = "student"

    def __init__(self):
        super().__init__()
        self.inference_only = False

    def forward(self, x):
        b = x.mean(1, keepdim=True)
        return 1.0 + 9.0 * b, 2.0 * torch.log(0.1 + b)


def brightness_estimator(policy="resize", net=(128, 384)) -> DepthEstimator:
    info = ModelInfo(source="stand-in", backend="torch", input_hw=net, max_depth=10.0, focal_px=FOCAL)
    return DepthEstimator(TorchBackend(BrightnessDepth(), info, "cpu"), policy)


def crossing(profile: np.ndarray, level: float) -> float:
    """Sub-pixel position (pixel centres at integers) where a rising profile first reaches `level`."""
    i = int(np.argmax(profile >= level))
    a, b = profile[i - 1], profile[i]
    return i - 1 + (level - a) / (b - a)


def test_step_edges_land_where_they_are_after_the_resize_round_trip():
    est = brightness_estimator()
    h, w, col, row = 250, 777, 301, 97  # odd frame, not a multiple of 32
    img = np.zeros((h, w, 3), np.uint8)
    img[:, col:] = 255
    depth, sigma = est.estimate(img)
    assert depth.shape == sigma.shape == (h, w) and depth.dtype == np.float32
    edges = [crossing(depth[r], 5.5) for r in range(0, h, 17)]
    assert np.allclose(edges, col - 0.5, atol=1.0)  # the true edge lies between columns col-1 and col
    img = np.zeros((h, w), np.uint8)  # grey, horizontal edge
    img[row:] = 255
    depth, _ = est.estimate(img)
    assert abs(crossing(depth[:, 400], 5.5) - (row - 0.5)) <= 1.0
    assert depth[0, 0] == pytest.approx(1.0) and depth[-1, -1] == pytest.approx(10.0, rel=1e-3)


def test_kb_crop_is_exact_inside_and_nan_outside():
    est = brightness_estimator("kb_crop")
    h, w = 300, 501
    img = np.zeros((h, w, 3), np.uint8)
    img[:, 250:] = 255
    depth, sigma = est.estimate(img)
    top, left, ch, cw = est.mapping((h, w)).box
    assert (top, left, ch, cw) == (300 - 128, (501 - 384) // 2, 128, 384)
    seen = np.zeros((h, w), bool)
    seen[top : top + ch, left : left + cw] = True
    assert np.isnan(depth[~seen]).all() and np.isnan(sigma[~seen]).all()
    assert np.isfinite(depth[seen]).all()
    np.testing.assert_allclose(depth[top:, left:250], 1.0)
    np.testing.assert_allclose(depth[top:, 250 : left + cw], 10.0)
    with pytest.raises(ValueError, match="at least as large"):
        est.estimate(np.zeros((100, 600, 3), np.uint8))


def test_grey_rgba_and_rgb_agree():
    est = brightness_estimator()
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (77, 201), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (77, 201, 1), dtype=np.uint8)], axis=2)
    ref, _ = est.estimate(rgb)
    for img in (grey, grey[:, :, None], rgba):
        np.testing.assert_allclose(est.estimate(img)[0], ref, rtol=1e-6)
    # a non-contiguous view (every other column of a wider frame) works too
    wide = np.repeat(rgb, 2, axis=1)
    np.testing.assert_allclose(est.estimate(wide[:, ::2])[0], ref, rtol=1e-6)
    flipped, _ = est.estimate(np.ascontiguousarray(rgb[::-1, ::-1])[::-1, ::-1])  # negative strides
    np.testing.assert_allclose(flipped, ref, rtol=1e-6)


def test_device_path_matches_the_numpy_path():
    """The torch pre/post-processing (used on CUDA) gives what the cv2 path gives (run here on the CPU)."""
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((90, 250, 3), (200, 700, 4), (128, 384))]
    for policy in ("resize", "kb_crop"):
        maps = [plan_input(f.shape[:2], (64, 192), policy) for f in frames]
        a = prepare_batch(frames, maps)
        b = prepare_batch_torch(frames, maps, torch.device("cpu")).numpy()
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6  # cv2 rounds the resized uint8 image
        out = torch.rand(3, 1, 64, 192) * 50
        sig = torch.rand(3, 1, 64, 192)
        got = restore_torch(out, sig, maps, [1.0, 2.0, 0.5])
        for i, (m, f) in enumerate(zip(maps, [1.0, 2.0, 0.5])):
            ref_d = restore(out[i, 0].numpy().copy(), m, f)
            ref_s = restore(sig[i, 0].numpy().copy(), m, f)
            # cv2 and torch interpolate float maps with slightly different arithmetic: ≤ 2e-5 of the range
            np.testing.assert_allclose(got[i][0], ref_d, rtol=0, atol=2e-5 * 100, equal_nan=True)
            np.testing.assert_allclose(got[i][1], ref_s, rtol=0, atol=2e-5 * 2, equal_nan=True)
            assert np.array_equal(np.isnan(got[i][0]), np.isnan(ref_d))


def test_stereo_teacher_on_both_paths(tmp_path):
    """A teacher's two views go through the same mapping into 6 channels, on the numpy path and on the
    torch (device) path, which is forced here onto the CPU; σ is None on both."""
    torch.manual_seed(0)
    cfg = ModelConfig(preset="nano", input_size=NET)
    teacher = build_teacher(cfg)
    est = DepthEstimator.from_model(teacher, FOCAL, policy="kb_crop")
    rng = np.random.default_rng(4)
    lefts = [rng.integers(0, 256, (80, 230, 3), dtype=np.uint8) for _ in range(2)]
    rights = [np.roll(left, -3, axis=1) for left in lefts]
    K = np.array([[200.0, 0, 115], [0, 200.0, 40], [0, 0, 1]])
    depths, sigmas = est.estimate_batch(lefts, [K, K], rights=rights)
    assert sigmas == [None, None] and depths[0].shape == (80, 230) and np.isnan(depths[0][0, 0])
    m = est.mapping((80, 230))
    x = np.concatenate([prepare_batch(lefts[:1], [m]), prepare_batch(rights[:1], [m])], axis=1)
    with torch.no_grad():
        raw = teacher.eval()(torch.from_numpy(x)).depth[0, 0].numpy()
    np.testing.assert_allclose(depths[0], restore(raw, m, 200.0 / FOCAL), rtol=1e-5, equal_nan=True)
    est.backend.device = torch.device("cpu")  # the CUDA code path, run on the CPU
    d_dev, s_dev = est.estimate(lefts[0], K, right=rights[0])
    assert s_dev is None
    np.testing.assert_allclose(d_dev, depths[0], rtol=1e-4, atol=1e-4, equal_nan=True)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 0), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "HxWx3"),
        (np.zeros((2, 4, 4, 3), np.uint8), "HxWx3"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        ([[1, 2], [3, 4]], "numpy"),
    ],
)
def test_bad_images_are_clear_errors(image, message):
    with pytest.raises(ValueError, match=message):
        check_image(image)
    with pytest.raises(ValueError, match=message):
        brightness_estimator().estimate(image)


# ---- the real nano student ---------------------------------------------------------------------------


def test_checkpoint_student_on_odd_frames(real):
    assert real.backend_name == "torch"
    info = real.info
    assert (
        info.input_hw == NET and info.focal_px == FOCAL and info.max_depth == 80.0 and info.preset == "nano"
    )
    rng = np.random.default_rng(3)
    for shape in ((101, 333, 3), (101, 333), (57, 190, 4), (64, 192, 3)):
        depth, sigma = real.estimate(rng.integers(0, 256, shape, dtype=np.uint8))
        assert depth.shape == sigma.shape == shape[:2]
        assert depth.dtype == sigma.dtype == np.float32
        assert np.isfinite(depth).all() and (depth > 0).all() and (depth <= 80.0).all()
        assert np.isfinite(sigma).all() and (sigma > 0).all()


def test_estimate_batch_is_one_network_call_and_matches_single_frames(real, monkeypatch):
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((80, 240, 3), (64, 192, 3), (120, 300))]
    Ks = [np.array([[200.0, 0, 120], [0, 200, 40], [0, 0, 1]]), None, np.diag([150.0, 150.0, 1.0])]
    singles = [real.estimate(f, K) for f, K in zip(frames, Ks)]
    calls = []
    run = real.backend.run
    monkeypatch.setattr(real.backend, "run", lambda x: calls.append(x.shape) or run(x))
    depths, sigmas = real.estimate_batch(frames, Ks)
    assert calls == [(3, 3, *NET)]
    for (d1, s1), d2, s2 in zip(singles, depths, sigmas):
        np.testing.assert_allclose(d2, d1, rtol=1e-4)
        np.testing.assert_allclose(s2, s1, rtol=1e-4)
    assert real.estimate_batch([]) == ([], [])
    with pytest.raises(ValueError, match="2 camera matrices for 3 images"):
        real.estimate_batch(frames, Ks[:2])
    with pytest.raises(ValueError, match="list of images"):
        real.estimate_batch(frames[0])


def test_network_intrinsics_of_the_estimator(real):
    K = np.array([[180.0, 0, 99.5], [0, 180.0, 31.5], [0, 0, 1]])
    np.testing.assert_allclose(real.network_intrinsics(K, (128, 384))[0, 0], 90.0)
    assert real.focal_factor(K, (128, 384)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not calibrated"):
        real.network_intrinsics(np.zeros((3, 3)), (128, 384))


def test_model_file_errors(tmp_path, student_ckpt):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        DepthEstimator.from_path(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt.pt.*not a readable checkpoint"):
        DepthEstimator.from_path(bad)
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown model file type"):
        DepthEstimator.from_path(odd)
    with pytest.raises(ValueError, match="unknown backend"):
        DepthEstimator.from_path(student_ckpt, backend="tflite")
    with pytest.raises(ValueError, match="adu-depth export"):
        DepthEstimator.from_path(student_ckpt, backend="onnxruntime")
    with pytest.raises(ValueError, match="policy"):
        DepthEstimator.from_path(student_ckpt, policy="stretch")
    cfg = ModelConfig(preset="nano", input_size=NET)
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(
        teacher, {"stage": "teacher", "model_config": to_dict(cfg), "model": build_teacher(cfg).state_dict()}
    )
    stereo = DepthEstimator.from_path(teacher, device="cpu")  # the torch backend runs a teacher
    assert stereo.info.stage == "teacher" and stereo.info.needs_right and not stereo.info.has_sigma
    with pytest.raises(ValueError, match="needs the right image of every frame"):
        stereo.estimate(np.zeros((64, 192, 3), np.uint8))
    with pytest.raises(ValueError, match="right image 0 is 32x96, the left is 64x192"):
        stereo.estimate(np.zeros((64, 192, 3), np.uint8), right=np.zeros((32, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="teacher.pt is a stereo teacher checkpoint; it runs on backend"):
        DepthEstimator.from_path(teacher, backend="onnxruntime")
    # consumers of one camera (node, predict, bench) refuse it at load time
    with pytest.raises(ValueError, match="'teacher' checkpoint; only the monocular student"):
        stereo.require_monocular("the depth node")
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.zeros((64, 192, 3), np.uint8))
    assert main(["predict", "--model", str(teacher), "--out-dir", str(tmp_path / "p"), str(frame)]) == 2
    assert not (tmp_path / "p" / "frame_depth.npy").exists()


# ---- commands ------------------------------------------------------------------------------------------


def test_predict_writes_all_outputs(tmp_path, student_ckpt, capsys):
    rng = np.random.default_rng(5)
    a = tmp_path / "in" / "a.png"
    b = tmp_path / "in" / "b.png"
    a.parent.mkdir()
    cv2.imwrite(str(a), rng.integers(0, 256, (70, 210, 4), dtype=np.uint8))  # BGRA file
    cv2.imwrite(str(b), rng.integers(0, 256, (64, 192), dtype=np.uint8))  # grey file
    out = tmp_path / "out"
    assert (
        main(["predict", "--model", str(student_ckpt), str(a), str(b), "--out-dir", str(out), "--fx", "180"])
        == 0
    )
    for stem, hw in (("a", (70, 210)), ("b", (64, 192))):
        depth = np.load(out / f"{stem}_depth.npy")
        sigma = np.load(out / f"{stem}_sigma.npy")
        assert depth.shape == sigma.shape == hw and depth.dtype == np.float32
        png = cv2.imread(str(out / f"{stem}_depth.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == hw
        # KITTI's convention (metres·256), read back by the project's own reader to within rounding
        np.testing.assert_array_equal(png, np.rint(depth.astype(np.float64) * 256).astype(np.uint16))
        np.testing.assert_allclose(read_depth_png(out / f"{stem}_depth.png"), depth, atol=0.5 / 256 + 1e-6)
        for kind in ("depth", "sigma"):
            colour = cv2.imread(str(out / f"{stem}_{kind}_color.png"))
            assert colour.shape == (*hw, 3)
    assert "a.png: depth" in capsys.readouterr().out
    # the estimator rescales by f_eff / f_train: fx 360 on a 64x192 frame doubles the depth of fx 180
    main(["predict", "--model", str(student_ckpt), str(b), "--out-dir", str(tmp_path / "o2"), "--fx", "360"])
    np.testing.assert_allclose(
        np.load(tmp_path / "o2" / "b_depth.npy"), 2 * np.load(out / "b_depth.npy"), rtol=1e-5
    )


def test_predict_refuses_colliding_outputs_and_bad_flags(tmp_path, student_ckpt, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for d in ("x", "y"):
        cv2.imwrite(str(tmp_path / d / "f.png"), np.zeros((64, 192, 3), np.uint8))
    args = ["predict", "--model", str(student_ckpt), str(tmp_path / "x" / "f.png")]
    assert main([*args, str(tmp_path / "y" / "f.png"), "--out-dir", str(tmp_path / "o")]) == 2
    assert "would write the same outputs" in capsys.readouterr().err
    assert main([*args, "--out-dir", str(tmp_path / "o"), "--fy", "100"]) == 2
    assert "--fy needs --fx" in capsys.readouterr().err
    assert main([*args, "--out-dir", str(tmp_path / "o"), "--fx", "0"]) == 2
    assert "not calibrated" in capsys.readouterr().err
    assert not (tmp_path / "o" / "f_depth.npy").exists()


def test_read_camera_matrix_formats(tmp_path):
    from adu_depth_core.commands.predict import read_camera_matrix

    yaml_file = tmp_path / "cam.yaml"
    yaml_file.write_text(
        "image_width: 1242\nimage_height: 375\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
        "  data: [721.5, 0, 609.6, 0, 721.5, 172.9, 0, 0, 1]\n"
    )
    kitti = tmp_path / "calib_cam_to_cam.txt"
    kitti.write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "P_rect_00: 7.215377e+02 0 6.095593e+02 0 0 7.215377e+02 1.728540e+02 0 0 0 1 0\n"
        "P_rect_02: 7.0e+02 0 6.0e+02 4.485728e+01 0 7.0e+02 1.7e+02 2.163791e-01 0 0 1 2.745884e-03\n"
    )
    plain = tmp_path / "K.txt"
    plain.write_text("500 0 320\n0 500 240\n0 0 1\n")
    assert read_camera_matrix(yaml_file)[0, 0] == 721.5
    assert read_camera_matrix(kitti)[0, 0] == 700.0  # P_rect_02 before P_rect_00
    assert read_camera_matrix(plain)[1, 2] == 240
    zero = tmp_path / "zero.yaml"
    zero.write_text("camera_matrix: {rows: 3, cols: 3, data: [0, 0, 0, 0, 0, 0, 0, 0, 0]}\n")
    with pytest.raises(ValueError, match="not calibrated"):
        read_camera_matrix(zero)
    other = tmp_path / "other.yaml"
    other.write_text("distortion: [1, 2]\n")
    with pytest.raises(ValueError, match="camera_matrix"):
        read_camera_matrix(other)
    with pytest.raises(FileNotFoundError):
        read_camera_matrix(tmp_path / "none.yaml")


def test_bench_reports_latency_and_memory(tmp_path, student_ckpt, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--model", str(student_ckpt), "--size", "75x250", "--runs", "3", "--warmup", "1"]
    assert main([*args, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "network alone" in text and "estimate() pre+net+post" in text
    result = json.loads(out.read_text())
    assert (
        result["backend"] == "torch"
        and result["network_input"] == "64x192"
        and result["image_size"] == "75x250"
    )
    for key in ("network", "estimate"):
        r = result[key]
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] and r["fps"] == pytest.approx(
            1e3 / r["median_ms"]
        )
    # In a long-lived test process the peak may predate this run, so only its presence is checked here;
    # memory figures live in docs/BENCHMARKS.md.
    assert isinstance(result["peak_rss_delta_mb"], float)


# ---- predict: outputs checked before the work, no silent overwrite, ordinary far depth ----------------


def _predict(student_ckpt, out, *images, extra=()):
    return main(["predict", "--model", str(student_ckpt), *map(str, images), "--out-dir", str(out), *extra])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_predict_refuses_existing_outputs_unless_overwrite(tmp_path, student_ckpt, capsys):
    img = tmp_path / "f.png"
    cv2.imwrite(str(img), np.full((64, 192, 3), 90, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "f_depth.npy").write_bytes(b"precious")
    assert _predict(student_ckpt, out, img) == 2
    line = _one_line(capsys)
    assert f"{out / 'f_depth.npy'} already exists" in line and "--overwrite" in line
    assert (out / "f_depth.npy").read_bytes() == b"precious" and len(list(out.iterdir())) == 1
    assert _predict(student_ckpt, out, img, extra=["--overwrite"]) == 0
    assert np.load(out / "f_depth.npy").shape == (64, 192)
    # --out-dir naming a file: one line saying so (was a raw "[Errno 17] File exists")
    assert _predict(student_ckpt, img, img) == 2
    assert _one_line(capsys) == f"adu-depth predict: error: --out-dir {img} is a file; expected a folder"


@pytest.mark.parametrize("hw", [(1, 1), (3, 4000), (4000, 3), (31, 500)])
def test_predict_refuses_images_too_small_before_writing(tmp_path, student_ckpt, capsys, hw):
    ok = tmp_path / "ok.png"
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(ok), np.full((64, 192, 3), 90, np.uint8))
    cv2.imwrite(str(tiny), np.full((*hw, 3), 90, np.uint8))
    assert _predict(student_ckpt, tmp_path / "out", ok, tiny) == 2
    line = _one_line(capsys)
    assert f"{tiny}: a {hw[0]}x{hw[1]} image is too small" in line and "at least 32 px" in line
    assert not (tmp_path / "out").exists()  # nothing written, not even for the good image


def test_predict_warns_on_upscaled_or_stretched_frames(tmp_path, student_ckpt, caplog):
    from adu_depth_core.runtime.preprocess import frame_warning, plan_input

    assert frame_warning(plan_input((64, 192), NET, "resize")) is None
    assert "upscaled 6.0x" in frame_warning(plan_input((32, 32), NET, "resize"))
    assert "stretched 3.0x" in frame_warning(plan_input((192, 192), NET, "resize"))
    img = tmp_path / "small.png"
    cv2.imwrite(str(img), np.full((40, 40, 3), 90, np.uint8))
    with caplog.at_level("WARNING"):
        assert _predict(student_ckpt, tmp_path / "out", img) == 0
    assert any("small.png: the 40x40 frame is upscaled 4.8x" in r.getMessage() for r in caplog.records)


def test_depth_png_holds_far_depth_and_counts_what_it_cannot(tmp_path):
    from adu_depth_core.commands.predict import depth_png_values
    from adu_depth_core.data.image_io import write_depth_png

    depth = np.array([[0.5, 65.5356, 80.0, 255.99], [256.0, np.nan, np.inf, 300.0]], np.float32)
    values, over = depth_png_values(depth, 256.0)
    assert over == 2  # 256 m and 300 m do not fit 65535 / 256; NaN and inf are invalid, not "beyond"
    write_depth_png(tmp_path / "d.png", values, scale=256.0)
    back = read_depth_png(tmp_path / "d.png")
    np.testing.assert_allclose(back[0], depth[0], atol=0.5 / 256)  # the model's 80 m range round-trips
    assert back[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    # at millimetres, 65.5356 m rounds to 65536: beyond, so counted and written as 0 (no exception)
    values, over = depth_png_values(depth[:1, :2], 1000.0)
    assert over == 1 and values[0, 1] == 0.0
    write_depth_png(tmp_path / "mm.png", values, scale=1000.0)


def test_predict_full_disk_is_one_line_naming_the_file_and_leaves_no_temp(
    tmp_path, student_ckpt, capsys, monkeypatch
):
    import errno

    import adu_depth_core.fileio as ck

    img = tmp_path / "f.png"
    cv2.imwrite(str(img), np.full((64, 192, 3), 90, np.uint8))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", full)
    out = tmp_path / "out"
    assert _predict(student_ckpt, out, img) == 2
    line = _one_line(capsys)
    assert line == (
        f"adu-depth predict: error: {out / 'f_depth.png'}: no space left on the device; free space or "
        "choose another output location"
    )
    assert list(out.iterdir()) == []  # the temp file of the failed write is gone


def test_bench_json_checked_before_the_benchmark(tmp_path, student_ckpt, capsys):
    args = ["bench", "--model", str(student_ckpt), "--runs", "1", "--warmup", "0"]
    assert main([*args, "--json", str(tmp_path)]) == 2
    assert _one_line(capsys) == f"adu-depth bench: error: --json {tmp_path} is a folder; expected a file path"
    old = tmp_path / "old.json"
    old.write_text("{}")
    assert main([*args, "--json", str(old)]) == 2
    assert "already exists (pass --overwrite" in _one_line(capsys) and old.read_text() == "{}"
    assert main([*args, "--json", str(old), "--overwrite"]) == 0 and "network" in json.loads(old.read_text())
