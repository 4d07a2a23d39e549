#!/usr/bin/env bash
# Figures this project's own machines cannot give, measured in one bounded run on a borrowed machine
# with a CUDA GPU and a server CPU (this workplace lends one for 15 minutes, no network there):
#   1. distillation throughput on the GPU (benchmarks/gpu_distill.py): teachers in bf16, students training;
#   2. the best CPU artifact on 2 cores of a CPU with AMX or AVX512-BF16 (bench_quant.py: OpenVINO
#      fp32 and bf16 beside eager PyTorch, then int8 if the time allows), BiRefNet_lite at 1024 px.
# The exports run on the other cores while the GPU is measured, so only the timed runs are on 2 cores.
# Packages missing there (openvino, nncf) travel as wheels in .whl/ (see the workplace's device notes).
# Every step has a time limit, so the whole run ends in about 9 minutes with what it measured in $OUT.
# First run (2026-12-04, H200 + 16-core Xeon with AMX): the GPU phase took 150 s and the int8 export 302 s,
# which left phase C too little time to finish; GPU=0 skips the GPU phase to give int8 its timing.
set -u
OUT=${OUT:-/tmp/lent_machine}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0)) s] $*"; }
left() { echo $((${BUDGET:-540} - ($(date +%s) - T0))); }

say "machine"
nvidia-smi -L
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA node\(s\))'
python3 -c "
import importlib, torch, birefnet_edge._cpu as c
print('torch', torch.__version__, '|', c.describe())
for name in ('torchvision', 'timm', 'openvino', 'nncf'):
    try: print(name, importlib.import_module(name).__version__)
    except Exception as e: print(name, 'MISSING', e)
"
# TWO: one logical CPU on each of two physical cores (the goal's "2 cores"); REST: every CPU of the other cores.
read -r TWO REST < <(python3 -c "
import subprocess
cores = {}
for line in subprocess.check_output(['lscpu', '-p=CPU,CORE'], text=True).splitlines():
    if not line.startswith('#'):
        cpu, core = line.split(',')[:2]
        cores.setdefault(core, []).append(cpu)
ids = list(cores)
two, rest = [cores[c][0] for c in ids[:2]], [cpu for c in ids[2:] for cpu in cores[c]]
print(','.join(two), ','.join(rest or two))  # a 2-core machine (a dry run) exports on the same 2
")
say "timed CPU runs on CPUs $TWO; exports on $REST"

Q=/tmp/q
VARIANT=${VARIANT:-BiRefNet_lite} SIZE=${SIZE:-1024}  # other values only for a dry run on a small machine
export_on_rest() {  # export_on_rest SECONDS LOG TARGET...: as bench_quant.py --keep $Q exports them
    timeout "$1" taskset -c "$REST" python3 -c "
import sys
from birefnet_edge.export import export_targets
for r in export_targets('random:$VARIANT', sys.argv[1:], '$Q/$SIZE', size=($SIZE, $SIZE), reuse=True):
    print('export', r.target, r.status, f'{r.seconds:.0f} s', f'peak {r.peak_rss_bytes / 2**30:.2f} GiB', r.error or '')
" "${@:3}" > "$OUT/$2" 2>&1
    echo "exit $?" >> "$OUT/$2"
}

say "phase A: GPU throughput (CPUs $TWO) while OpenVINO fp32/bf16 and int8 export (CPUs $REST)"
# 360 s: openvino-bf16 converts its own graph (the gather_int deformable conv), ~2 min each there.
export_on_rest 360 export_float.txt openvino-fp32 openvino-bf16 &
FLOAT=$!
export_on_rest 420 export_int8.txt openvino-int8 &
INT8=$!
gpu() {
    [ "${GPU:-1}" = 0 ] && { echo "GPU=0: gpu_distill.py skipped"; return; }
    command -v nvidia-smi > /dev/null || { echo "no GPU: gpu_distill.py skipped"; return; }
    timeout "$1" taskset -c "$TWO" python3 benchmarks/gpu_distill.py "${@:2}" || echo "gpu_distill exit $?"
}
gpu 90 --teacher BiRefNet --teacher-batch 4 --students student-s student-m --student-batch 16 --steps 10
gpu 45 --teacher BiRefNet --teacher-batch 1 --students student-s --student-batch 32 --steps 10
gpu 45 --teacher BiRefNet_lite --teacher-batch 8 --students student-m --student-batch 32 --steps 10
say "GPU done; waiting for the float export"
wait $FLOAT
cat "$OUT/export_float.txt"

say "phase B: 2-core timing of OpenVINO fp32/bf16 and eager (CPUs $TWO); the int8 export may still run (CPUs $REST)"
OMP_NUM_THREADS=2 timeout 240 taskset -c "$TWO" python3 benchmarks/bench_quant.py --variant "$VARIANT" --size "$SIZE" --batch 1 \
    --runs 3 --warmup 1 --target openvino-fp32 --target openvino-bf16 --keep $Q || echo "bench_quant exit $?"
say "waiting for the int8 export"
wait $INT8
cat "$OUT/export_int8.txt"

if ls "$Q/$SIZE/"*-openvino-int8/manifest.json > /dev/null 2>&1 && [ "$(left)" -gt 60 ]; then
    say "phase C: openvino-int8 beside fp32 on 2 cores (nothing else running)"
    OMP_NUM_THREADS=2 timeout $(($(left) - 10)) taskset -c "$TWO" python3 benchmarks/bench_quant.py --variant "$VARIANT" \
        --size "$SIZE" --batch 1 --runs 3 --warmup 1 --target openvino-fp32 --target openvino-int8 --keep $Q || echo "bench_quant exit $?"
fi
say "done"
