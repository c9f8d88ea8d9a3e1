#!/usr/bin/env bash
# Every CUDA path of the suite on one GPU, in at most 10 minutes, from a fresh clone:
#
#   bash benchmarks/perf/gpu_check.sh            # from anywhere; needs an NVIDIA GPU (nvidia-smi)
#
# Setup: uses $SRBENCH_PYTHON if set, else this checkout's .venv if its torch sees CUDA, else creates
# .venv-gpu with PyPI's default (CUDA) torch and torchvision and `pip install -e .` (a few minutes; needs the
# package registry). Then, each step under its own time limit, continuing after a failure:
#   env          the GPU, driver, torch / CUDA versions, bf16 support
#   amp          resolve_auto on CUDA turns AMP and channels-last on; one DeepLab-v3 ResNet-101 training step
#                (MEA + SR-F + SR-L, official exits, 321 px, batch 4) in bf16 autocast on channels-last input:
#                logits in bf16, loss and gradients finite, CUDA peak memory from srlib.cost
#   lal          benchmarks/perf/lal_cost.py --device cuda (LAL against cross-entropy: time and CUDA peak memory)
#   sr_overhead  benchmarks/perf/sr_overhead.py --device cuda at the paper's VOC resolution (321 px, batch 10),
#                DeepLab-v2 and -v3 ResNet-101
#   gpu_slots    two jobs through workflow/scripts/gpu_slot.py on a pool of one GPU: they never overlap
#   sweep        a tiny sweep on CUDA (`snakemake --cores 4 --resources gpu=1`; 2 SR cells x 2 seeds, cost
#                jobs, MLflow on): every run FINISHED with device cuda, AMP and channels-last on, every job
#                got the GPU from gpu_slot, the cost table reports CUDA peak memory
# and prints one summary (step, PASS/FAIL/SKIP, seconds, key figure). Logs: results/gpu_check/<step>.log.
# Exit status: the number of failed steps.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$REPO/results/gpu_check
BUDGET_S=570            # the whole check, setup included, stays under 10 minutes
mkdir -p "$OUT"
cd "$REPO" || exit 1
declare -a SUMMARY=()
FAILED=0

note() { echo "gpu_check: $*" >&2; }

# -- setup -----------------------------------------------------------------------------------------
cuda_ok() { "$1" -c "import torch, srlib; assert torch.cuda.is_available()" 2>/dev/null; }
if [[ -n ${SRBENCH_PYTHON:-} ]]; then
    PY=$SRBENCH_PYTHON
elif [[ -x .venv/bin/python ]] && cuda_ok .venv/bin/python; then
    PY=.venv/bin/python
else
    PY=.venv-gpu/bin/python
    if ! cuda_ok "$PY"; then
        note "setting up .venv-gpu (CUDA torch from PyPI, srlib editable)"
        { python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -q torch torchvision \
            && .venv-gpu/bin/pip install -q -e '.[test]'; } > "$OUT/setup.log" 2>&1 \
            || { note "setup failed, see $OUT/setup.log"; tail -5 "$OUT/setup.log" >&2; exit 100; }
    fi
fi
cuda_ok "$PY" || { note "torch in $PY sees no CUDA device"; exit 100; }
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
export PATH="$(dirname "$PY"):$PATH"
GPU=${CUDA_VISIBLE_DEVICES:-0}
GPU=${GPU%%,*}          # the check uses one GPU
export CUDA_VISIBLE_DEVICES=$GPU

# step NAME LIMIT_S FIGURE_PATTERN COMMAND...: run with a time limit, log, record status and a key line.
step() {
    local name=$1 limit=$2 pattern=$3 start status figure
    shift 3
    if (( SECONDS + 10 > BUDGET_S )); then
        SUMMARY+=("$(printf '%-12s %-5s %6s  %s' "$name" SKIP - "no time left in the ${BUDGET_S} s budget")")
        return
    fi
    (( limit > BUDGET_S - SECONDS )) && limit=$(( BUDGET_S - SECONDS ))
    note "$name (limit ${limit} s)"
    start=$SECONDS
    if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then status=PASS; else status=FAIL; FAILED=$((FAILED + 1)); fi
    figure=$(grep -E "$pattern" "$OUT/$name.log" | tail -n 3 | tr -s ' ' | paste -sd ';' - | cut -c1-220)
    [[ $status == FAIL ]] && figure="$(tail -n 1 "$OUT/$name.log" | cut -c1-200)"
    SUMMARY+=("$(printf '%-12s %-5s %5ss  %s' "$name" "$status" $((SECONDS - start)) "$figure")")
}

# -- the steps ---------------------------------------------------------------------------------------
step env 60 "^(gpu|torch)" "$PY" -c '
import subprocess, torch
print("gpu", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB,",
      "driver", subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True).stdout.strip())
print("torch", torch.__version__, "cuda", torch.version.cuda, "bf16", torch.cuda.is_bf16_supported())
assert torch.cuda.is_bf16_supported()
'

step amp 120 "^amp" "$PY" -c '
import torch
from srlib.config import DEFAULTS, resolve_auto
from srlib.cost import peak_memory_so_far
from srlib.losses.self_regulation import self_regulation_loss
from srlib.models import build_preset

cfg = resolve_auto(DEFAULTS)
assert (cfg["device"], cfg["optim"]["amp"], cfg["optim"]["channels_last"]) == ("cuda", True, True), cfg["optim"]
torch.manual_seed(0)
model = build_preset("deeplabv3_resnet101", 21, exit_type="official", classify=True).cuda().train()
model = model.to(memory_format=torch.channels_last)
images = torch.randn(4, 3, 321, 321, device="cuda").contiguous(memory_format=torch.channels_last)
masks = torch.randint(0, 21, (4, 321, 321), device="cuda")
torch.cuda.reset_peak_memory_stats()
with torch.autocast("cuda", dtype=torch.bfloat16):
    out = model(images)
    loss = self_regulation_loss(out, masks, mea=True, srf=True, srl=True, variant="official", num_classes=21)["total"]
loss.backward()
torch.cuda.synchronize()
dtypes = {str(z.dtype) for z in out["seg"]}
grads = [p.grad for p in model.parameters() if p.grad is not None]
assert dtypes == {"torch.bfloat16"}, dtypes
assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
peak = peak_memory_so_far("cuda")
assert peak["kind"] == "cuda_max_allocated" and peak["peak_bytes"] > 0, peak
gib = peak["peak_bytes"] / 2**30
print(f"amp: bf16 logits, loss {loss.item():.3f}, {len(grads)} finite grads, channels-last, CUDA peak {gib:.2f} GiB")
'

step lal 120 "^(lal|ce) " "$PY" benchmarks/perf/lal_cost.py --device cuda --rounds 10

step sr_overhead 180 "(target|sr-light)" "$PY" benchmarks/perf/sr_overhead.py --device cuda --size 321 --batch 10 \
    --preset deeplabv2_resnet101 --preset deeplabv3_resnet101 --warmup 3 --repeats 10

step gpu_slots 60 "^gpu_slots" "$PY" - <<'EOF'
import os, subprocess, sys, tempfile, time
hold = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], time.time(), flush=True); time.sleep(3); print(time.time())"
env = {**os.environ, "SRBENCH_GPU_LOCK_DIR": tempfile.mkdtemp()}
env.pop("SLURM_JOB_ID", None)
jobs = [subprocess.Popen([sys.executable, "workflow/scripts/gpu_slot.py", "1", "--", sys.executable, "-c", hold],
                         env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
spans = sorted((float(lines[1]), float(lines[2]), lines[0]) for lines in (job.communicate()[0].split() for job in jobs))
assert all(job.returncode == 0 for job in jobs)
assert spans[0][1] <= spans[1][0], f"two jobs held GPU {spans[0][2]} at once: {spans}"
print(f"gpu_slots: 2 jobs on a pool of 1 GPU ran one after the other on GPU {spans[0][2]} / {spans[1][2]}")
EOF

sweep() {
    local work
    work=$(mktemp -d)
    cp Snakefile "$work/" && cp -r workflow profiles benchmarks "$work/"
    cat > "$work/benchmarks/gpucheck.yaml" <<'EOF'
name: gpucheck
base:
  device: cuda
  data: {crop_size: 64, batch_size: 16, eval_batch_size: 32}
  model: {exit: light}
  optim: {iters: 40}
  run: {cost_steps: 5, pictures: 2, log_every: 10}
axes:
  dataset: [{name: generated, generate: {size: 64, n_train: 128, n_val: 32, n_test: 32}}]
  preset: [deeplabv3_resnet18]
  sr: [baseline, mea+srf+srl]
  seed: [0, 1]
cost: {exits: [light], sr: [baseline, mea+srf+srl]}
resources:
  train: {threads: 2, gpu: 1, mem_mb: 8000, runtime: 10}
  cost: {threads: 2, gpu: 1, mem_mb: 8000, runtime: 10}
EOF
    (cd "$work" && snakemake --cores 4 --resources gpu=1 --configfile benchmarks/gpucheck.yaml) || return 1
    "$PY" - "$work/results/gpucheck" "$GPU" <<'EOF'
import json, pathlib, sys
bench, gpu = pathlib.Path(sys.argv[1]), sys.argv[2]
runs = sorted((bench / "runs").rglob("metrics.json"))
assert len(runs) == 4, runs
for path in runs:
    record = json.loads(path.read_text())
    cfg = record["config"]
    assert record.get("status", "FINISHED") == "FINISHED", path
    assert (cfg["device"], cfg["optim"]["amp"], cfg["optim"]["channels_last"]) == ("cuda", True, True), path
    log = (path.parent / "train.log").read_text()
    assert f"gpu_slot: CUDA_VISIBLE_DEVICES={gpu}" in log, path.parent / "train.log"
from srlib.config import MEMORY_KINDS
costs = [json.loads(p.read_text()) for p in sorted((bench / "cost").rglob("*.json"))]
assert costs and all((c["memory_kind"], c["step_tensor_memory_kind"]) == ("cuda_max_allocated", "cuda_step_allocated")
                     for c in costs), [(c["memory_kind"], c["step_tensor_memory_kind"]) for c in costs]
assert all(c["step_tensor_memory_mib"] > 0 for c in costs), [c["step_tensor_memory_mib"] for c in costs]
assert MEMORY_KINDS["cuda_max_allocated"] in (bench / "cost.md").read_text(), "cost table does not report CUDA peak memory"
miou = [json.loads(p.read_text())["metrics"]["miou"] for p in runs]
print(f"sweep: 4 runs FINISHED on cuda (bf16 AMP, channels-last), mIoU {min(miou):.3f}-{max(miou):.3f}; "
      f"cost: CUDA peak and step tensor memory ({len(costs)} configs); tables in {bench}")
EOF
}
export -f sweep
export PY GPU
step sweep 240 "^sweep" bash -c sweep

# -- summary -----------------------------------------------------------------------------------------
echo
echo "== SR-Bench GPU check: $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null), ${SECONDS} s, ${FAILED} failed"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
