"""benchmarks/gpu_suite.{sh,py} without a GPU: the numbers its helpers compute, the CPU fallbacks and
the clear skips (no CUDA, no TensorRT, no ROS 2), and the steps the shell script runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
gs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gs)

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU fallbacks")


def test_absrel_difference_numbers():
    ref = np.array([[1.0, 2.0], [4.0, np.nan]], np.float32)
    cand = np.array([[1.1, 2.0], [3.0, 5.0]], np.float32)
    value, n = gs.absrel_difference(cand, ref)
    assert n == 3 and value == pytest.approx((0.1 + 0.0 + 0.25) / 3, rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        gs.absrel_difference(cand, ref[:1])
    with pytest.raises(ValueError, match="no pixel is valid"):
        gs.absrel_difference(np.full((2, 2), np.nan), ref)


def test_parity_on_the_cpu_compares_torch_with_onnxruntime_fp32(tmp_path):
    out = tmp_path / "parity.json"
    rc = gs.main(["parity", "--preset", "nano", "--size", "64x96", "--frames", "2", "--candidate", "torch",
                  "--workdir", str(tmp_path / "models"), "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert (data["preset"], data["size"], data["frames"]) == ("nano", [64, 96], 2)
    assert 0.0 <= data["absrel_difference_max"] < 1e-4  # the same FP32 network on two runtimes
    assert (tmp_path / "models" / "nano" / "student.onnx").is_file()  # reused by the FPS step


@needs_no_gpu
def test_gpu_steps_skip_clearly_without_cuda(tmp_path, capsys):
    for argv in (
        ["parity", "--preset", "nano", "--size", "64x96", "--workdir", str(tmp_path / "m")],
        ["train", "--preset", "nano", "--size", "64x96", "--require-cuda"],
    ):
        out = tmp_path / f"{argv[0]}.json"
        assert gs.main([*argv, "--out", str(out)]) == 0
        data = json.loads(out.read_text())
        assert "no CUDA device" in data["skipped"]
        assert "skipped: no CUDA device" in capsys.readouterr().err


def test_node_latency_skips_without_ros(tmp_path):
    try:
        import rclpy  # noqa: F401
        from sensor_msgs.msg import Image  # noqa: F401

        pytest.skip("ROS 2 is sourced here")
    except ImportError:
        pass
    out = tmp_path / "n.json"
    assert gs.main(["node-latency", "--model", str(tmp_path / "x.onnx"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["skipped"].startswith("ROS 2 is not sourced")


@needs_no_gpu
def test_training_steps_on_the_cpu_and_the_summary(tmp_path):
    out = tmp_path / "train.json"
    assert gs.main(["train", "--preset", "nano", "--size", "64x96", "--batch", "2", "--steps", "2",
                    "--warmup", "1", "--out", str(out)]) == 0  # fmt: skip
    data = json.loads(out.read_text())
    assert (data["device"], data["amp"], data["steps"]) == ("cpu", "none", 2)  # no autocast on the CPU
    assert data["steps_per_s"] > 0
    (tmp_path / "parity_x.json").write_text(json.dumps({"step": "parity", "skipped": "no CUDA device"}))
    table = gs.summary(tmp_path)
    assert "| parity_x | — | skipped: no CUDA device |" in table
    assert "| train | nano 64x96, batch 2, amp none, cpu |" in table


def test_the_shell_script_runs_the_issues_steps():
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--dry-run", "/x"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert run.returncode == 0, run.stderr
    steps = dict(line.split(": ", 1) for line in run.stdout.splitlines())
    assert list(steps) == ["gpu_tests", "parity_swin_t", "fps_swin_t", "parity_paper", "fps_paper",
                           "train_swin_t_fp16", "train_swin_t_bf16", "node_latency_swin_t"]  # fmt: skip
    for preset in ("swin_t", "paper"):
        assert "--size 352x1216" in steps[f"parity_{preset}"]
        assert "--backend tensorrt --fp16" in steps[f"fps_{preset}"]
    assert "--amp fp16" in steps["train_swin_t_fp16"] and "--backend tensorrt" in steps["node_latency_swin_t"]
