#!/usr/bin/env bash
# One prepared run for a lent GPU machine (the workplace's `device` tool), everything under one deadline:
#   1. smoke runs of every CUDA code path on two-moons, side by side: soft labels + mixup, LLP-VAT,
#      LLP-GAN, `torchrun` (NCCL, one rank), and hard labels for 10 PLOT epochs;
#   2. benchmarks/prediction.py: the prediction pass over 50,000 images with and without BatchNorm folded;
#      benchmarks/step_profile.py: WRN-28-2's supervised and PLOT training steps under torch.profiler;
#      benchmarks/relabel_overlap.py: how much of the prediction pass a second CUDA stream hides behind
#      conv-large's training steps (whether a pipelined PLOT could pay);
#      then benchmarks/gpu.py --synthetic, one network and compile setting per invocation, each under its
#      own time limit (compile off first: those rows matter most);
#   3. real CIFAR-10 (the subset written by benchmarks/cifar_subset.py into .gpudata/, since the official
#      archive is over the 64 MiB a call carries): conv-large, DLLP then PLOT, bag 64, the paper's
#      settings (configs/paper/table1/cifar10_bag64_dllp_plot.yaml) for a few epochs.
#   4. benchmarks/ot_threads.py: the exact OT against the number of solver threads on that CPU;
#   5. gpu.py again with compile on (last: its compilation takes minutes);
#   6. (step gpu-static, not run unless named) WRN-28-2 compiled with one graph per input size;
#      (step gpu-fused, not run unless named, after gpu-off) gpu.py eager again with Adam's fused
#      implementation, to compare with gpu-off's rows (torch's default foreach, what plotllp train uses);
#   7. (step tests, not run unless named) the test suite on that machine, where `--device auto` (the
#      default of most tests) means CUDA; pytest-xdist's workers if it is installed there; each test's
#      outcome is written as it ends (-v), so a run stopped by its limit still names its failures.
# Results go to $OUT (prediction_cuda.md, step_profile_wrn-28-2_cuda.md, relabel_overlap_cuda.md, gpu.md, gpu.json,
# cifar_results.json, ot_threads.md, pytest.log, session.log). Without a git checkout there, pass the commit in
# PLOTLLP_COMMIT. Usage (in the repository root):
#   OUT=/tmp/gpu_out PLOTLLP_COMMIT=abc1234 bash benchmarks/gpu_session.sh
# GPU_SESSION_SECONDS (default 540) is the whole script's budget; GPU_SESSION_STEPS (default
# "smoke prediction profile overlap gpu-off cifar ot-threads gpu-on") the steps to run (always in that order);
# GPU_SESSION_GPU_EPOCHS (default 2) gpu.py's timed epochs; GPU_SESSION_EPOCHS1, GPU_SESSION_EPOCHS2 and
# GPU_SESSION_CIFAR_TRAIN (defaults 40, 20, 15000) the cifar step's epochs and training images;
# GPU_SESSION_MODELS (default "conv-large wrn-28-2") the networks of the gpu.py steps;
# GPU_SESSION_TEST_WORKERS (default 14) the tests step's pytest-xdist workers; GPU_SESSION_TESTS (default tests) what
# it runs (test files or node ids; e.g. "tests/test_distributed.py tests/test_resume.py tests/test_experiments.py"); PYTHON (default python3) the
# interpreter; GPU_SESSION_DEVICE (default cuda) and GPU_SESSION_TRAIN_SIZE (default 50000) exist to check the script on a CPU.
set -u
OUT=${OUT:-gpu_session_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${GPU_SESSION_DEVICE:-cuda}
TRAIN_SIZE=${GPU_SESSION_TRAIN_SIZE:-50000}
DEADLINE=$(( $(date +%s) + ${GPU_SESSION_SECONDS:-540} ))
PY=${PYTHON:-python3}
exec > >(tee -a "$OUT/session.log") 2>&1

STEPS=" ${GPU_SESSION_STEPS:-smoke prediction profile overlap gpu-off cifar ot-threads gpu-on} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
left() { echo $(( DEADLINE - $(date +%s) )); }
# step NAME CAP MIN command...: run under min(CAP, seconds left); skip when fewer than MIN are left
step() {
    local name=$1 cap=$2 min=$3; shift 3
    local t; t=$(left); (( t > cap )) && t=$cap
    if (( t < min )); then echo "== $name: skipped ($(left) s left)"; return; fi
    echo "== $name (limit $t s) $(date -u +%H:%M:%S)"
    local t0; t0=$(date +%s)
    timeout --kill-after=5 "$t" "$@"; local rc=$?
    echo "== $name: rc $rc after $(( $(date +%s) - t0 )) s"
}

echo "== setup $(date -u)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | head -3
$PY -c "import torch, numpy, scipy, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'scipy', scipy.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
command -v gcc >/dev/null && echo "gcc: $(gcc --version | head -1)" || echo "gcc: none (torch.compile may fail)"

smoke() {
    local common=(--dataset moons --epochs1 6 --epochs2 4 --device "$DEVICE" --quiet --overwrite)
    $PY -m plotllp train "${common[@]}" --labels soft --mixup --out /tmp/smoke_soft > /tmp/smoke_soft.log 2>&1 &
    $PY -m plotllp train "${common[@]}" --first-stage vat --out /tmp/smoke_vat > /tmp/smoke_vat.log 2>&1 &
    $PY -m plotllp train "${common[@]}" --first-stage gan --out /tmp/smoke_gan > /tmp/smoke_gan.log 2>&1 &
    $PY -m torch.distributed.run --nproc_per_node 1 -m plotllp train "${common[@]}" --out /tmp/smoke_ddp \
        > /tmp/smoke_ddp.log 2>&1 &
    $PY -m plotllp train --dataset moons --epochs1 6 --epochs2 10 --device "$DEVICE" --quiet --overwrite --out /tmp/smoke_hard \
        > /tmp/smoke_hard.log 2>&1 &
    wait
    for k in soft vat gan ddp hard; do
        echo "-- smoke $k: $(tail -n 3 /tmp/smoke_$k.log | tr '\n' ' ')"
        [ -f /tmp/smoke_$k/results.json ] && $PY -c "import json; r=json.load(open('/tmp/smoke_$k/results.json')); print('   first stage', r['first_stage'].get('test_accuracy'), 'final', r['final'].get('test_accuracy'), 'device', r['device'], 'processes', r.get('processes'), 'PLOT warm starts', [h.get('warm_start') for h in r['history'] if h['stage'] == 'plot'])"
    done
}
want smoke && step smoke 60 20 bash -c "$(declare -f smoke); DEVICE=$DEVICE PY=$PY smoke"

gpu() {
    step "gpu.py $1 compile=$2${4:+ ${*:4}}" "$3" 30 $PY benchmarks/gpu.py --synthetic --device "$DEVICE" --train-size "$TRAIN_SIZE" \
        --models "$1" --compile "$2" --epochs "${GPU_SESSION_GPU_EPOCHS:-2}" --rows "$OUT/gpu.json" --out-dir "$OUT" "${@:4}"
}
want prediction && step "prediction pass, BatchNorm folded or not" 40 15 $PY benchmarks/prediction.py \
    --images "$TRAIN_SIZE" --repeats 3 --device "$DEVICE" --out-dir "$OUT"
want profile && step "WRN-28-2 training steps profiled, supervised and PLOT" 60 20 $PY benchmarks/step_profile.py \
    --model wrn-28-2 --train-size $(( TRAIN_SIZE < 10240 ? TRAIN_SIZE : 10240 )) --device "$DEVICE" --out-dir "$OUT"
want overlap && step "prediction pass on a side stream beside conv-large's training" 120 30 $PY benchmarks/relabel_overlap.py \
    --synthetic --model conv-large --train-size "$TRAIN_SIZE" --device "$DEVICE" --out-dir "$OUT"
MODELS=" ${GPU_SESSION_MODELS:-conv-large wrn-28-2} "
model() { [[ "$MODELS" == *" $1 "* ]]; }
if want gpu-off; then model conv-large && gpu conv-large off 100; model wrn-28-2 && gpu wrn-28-2 off 150; fi
if want gpu-fused; then model conv-large && gpu conv-large off 100 --adam fused; model wrn-28-2 && gpu wrn-28-2 off 150 --adam fused; fi
want cifar && step "cifar10 subset: conv-large DLLP + PLOT" 100 40 $PY -m plotllp train \
    --config configs/paper/table1/cifar10_bag64_dllp_plot.yaml --data-dir .gpudata \
    --train-size "${GPU_SESSION_CIFAR_TRAIN:-15000}" --epochs1 "${GPU_SESSION_EPOCHS1:-40}" --epochs2 "${GPU_SESSION_EPOCHS2:-20}" --device "$DEVICE" --overwrite --out /tmp/cifar_run
[ -f /tmp/cifar_run/results.json ] && cp /tmp/cifar_run/results.json "$OUT/cifar_results.json" && $PY -c "
import json; r = json.load(open('$OUT/cifar_results.json'))
for h in r['history']:
    if h['stage'] == 'plot':
        print('   PLOT epoch', h['epoch'], 'seconds %.2f' % h['seconds'], 'relabel %.3f' % h.get('relabel_seconds', 0),
              'OT %.4f' % h.get('ot_seconds', 0), 'warm', h.get('warm_start'), 'test %.4f' % h.get('test_accuracy', 0))
print('   first stage', r['first_stage'].get('test_accuracy'), 'final', r['final'].get('test_accuracy'))"
want ot-threads && step "OT against solver threads" 60 15 $PY benchmarks/ot_threads.py --out-dir "$OUT"
if want gpu-on; then model conv-large && gpu conv-large on 150; model wrn-28-2 && gpu wrn-28-2 on 600; fi
want gpu-static && gpu wrn-28-2 static 600
workers=$($PY -c "import xdist" 2>/dev/null && echo "-n ${GPU_SESSION_TEST_WORKERS:-14}")
# the plotllp processes that tests start take a thread per core each unless told: a share of the cores per worker
# (runs 8 and 9 of gpu.md: five such tests, 18-56 s each on 2 cores, unfinished after 146-240 s beside 7-14 workers)
threads=1; [ -n "$workers" ] && threads=$(( $(nproc) / ${GPU_SESSION_TEST_WORKERS:-14} )); (( threads < 1 )) && threads=1
want tests && step "test suite (--device auto: CUDA)" 240 30 env OMP_NUM_THREADS=$threads bash -c "$PY -m pytest ${GPU_SESSION_TESTS:-tests} -v -rfE -p no:cacheprovider $workers \
    --maxfail 30 -o addopts='' > '$OUT/pytest.log' 2>&1; rc=\$?; tail -n 40 '$OUT/pytest.log'; exit \$rc"
echo "== done $(date -u), $(left) s of the budget left"
[ -f "$OUT/gpu.md" ] && cat "$OUT/gpu.md"
