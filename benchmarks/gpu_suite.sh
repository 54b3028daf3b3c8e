#!/usr/bin/env bash
# The prepared one-shot GPU check (issue 16). On a CUDA machine with the package installed (and TensorRT:
# pip install -e ".[tensorrt]"), from the repository root:
#
#     benchmarks/gpu_suite.sh [OUT_DIR]          # default gpu_suite_out/ (or $OUT/gpu_suite when $OUT is set)
#     benchmarks/gpu_suite.sh --dry-run          # print the steps only
#
# Steps (each logs to OUT_DIR/<step>.log, writes OUT_DIR/<step>.json, and the suite goes on after a failure):
#   1. the CUDA / TensorRT tests (test/test_tensorrt.py, the GPU cases of test_runtime.py and test_train.py)
#   2. FP16 TensorRT engines of the swin_t and paper students at 352x1216, their depth against ONNX Runtime
#      FP32 on synthetic rig frames (AbsRel difference)
#   3. network FPS of each engine (adu-depth bench --backend tensorrt --fp16)
#   4. training steps/s with AMP (fp16 and bf16) of the swin_t student at 352x1216, batch 4
#   5. depth_node end-to-end latency with the swin_t engine, when a ROS 2 is sourced (else skipped)
# and OUT_DIR/summary.md, the table for docs/BENCHMARKS.md. Exit status: the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out="${1:-${OUT:+$OUT/gpu_suite}}"
out="${out:-gpu_suite_out}"
py="${PYTHON:-python}"
size=352x1216
failed=0

step() {  # step NAME COMMAND...: run, log, report; never stops the suite
    local name="$1"; shift
    if [ "$dry" = 1 ]; then echo "$name: $*"; return 0; fi
    echo "== $name: $*"
    local t0=$SECONDS
    if "$@" >"$out/$name.log" 2>&1; then
        echo "   ok ($((SECONDS - t0)) s)"
    else
        echo "   FAILED (status $?, $((SECONDS - t0)) s); last lines of $out/$name.log:"
        tail -n 15 "$out/$name.log" | sed 's/^/   | /'
        failed=$((failed + 1))
    fi
}

if [ "$dry" = 0 ]; then
    mkdir -p "$out"
    { nvidia-smi || true; "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
      "$py" -c "import tensorrt; print('tensorrt', tensorrt.__version__)" || true; } >"$out/machine.txt" 2>&1
fi

step gpu_tests "$py" -m pytest -q -p no:cacheprovider -rs test/test_tensorrt.py test/test_runtime.py \
    test/test_train.py -k "cuda or gpu or tensorrt or trt or amp"
for preset in swin_t paper; do
    step "parity_$preset" "$py" benchmarks/gpu_suite.py parity --preset "$preset" --size "$size" \
        --workdir "$out/models" --out "$out/parity_$preset.json"
    step "fps_$preset" adu-depth bench --model "$out/models/$preset/student.onnx" --backend tensorrt --fp16 \
        --device cuda --runs 50 --json "$out/fps_$preset.json"
done
for amp in fp16 bf16; do
    step "train_swin_t_$amp" "$py" benchmarks/gpu_suite.py train --preset swin_t --size "$size" --batch 4 \
        --steps 20 --amp "$amp" --require-cuda --out "$out/train_swin_t_$amp.json"
done
step node_latency_swin_t "$py" benchmarks/gpu_suite.py node-latency --model "$out/models/swin_t/student.onnx" \
    --backend tensorrt --frames 100 --out "$out/node_latency_swin_t.json"
if [ "$dry" = 0 ]; then
    "$py" benchmarks/gpu_suite.py summary "$out" >"$out/summary.md" && cat "$out/summary.md"
    echo "failed steps: $failed (logs and JSON in $out/)"
fi
exit "$failed"
