#!/usr/bin/env bash
# Issues 13 and 36's GPU check, as one prepared script for a CUDA machine lent to a session (about 8 minutes there).
#
#   1. Here (a CPU machine with pip and the prepared Instruments):   bash benchmarks/gpu_check.sh --prepare
#      downloads RecBole 1.2.1 and the needs of it that the device image lacks (colorlog 4.7.2, texttable, thop)
#      as Python 3.12 wheels into .whl/ (git-ignored through .git/info/exclude), and checks dataset/Instruments.
#   2. There: the device tool's run with  command="bash benchmarks/gpu_check.sh"  carry=[".whl", "dataset/Instruments"]
#      timeout_s=540. It installs the wheels with --no-deps (RecBole's ray pin has no Python 3.12 wheels, and the
#      plugin never imports ray), prints the GPU and whether triton and mamba-ssm import, then:
#        a. benchmarks/bench_mamba_scan_cuda.py: our Triton scan against the PyTorch loop on CUDA (output and the
#           gradients of u, delta, A, B, C, D, z), then one Mamba layer's scan forward + backward at batch 4096,
#           length 50, d_inner 128, d_state 32: PyTorch loop (64-row and memory-sized backward slices) vs Triton;
#        b. SASRec, Mamba4Rec, FamouSRec in its CPU setting and as the paper has it (exact L_spe, whole window),
#           then FamouSRec without its Mamba expert, 2 epochs each at batch 4096 on Instruments on CUDA
#           (benchmarks/gpu_epochs.py: seconds per epoch, peak GPU memory, validation NDCG@10); on the PyTorch
#           scan if the Triton parity failed (a wrong kernel is never timed);
#        c. benchmarks/gpu_mamba_parity.py where mamba-ssm imports;
#        d. Mamba4Rec once more on the PyTorch scan (RECBOLE_FAMOUS_MAMBA_SCAN=torch), the "before" of (b).
#      Sizing (docs/speed.md, H200, PyTorch scan, s/epoch at 4096: SASRec 3.0, Mamba4Rec 9.6, FamouSRec CPU setting
#      30.5, without Mamba 10.9; the paper's setting about 2x the CPU setting; each model's data preparation and
#      validation passes ~20-30 s): a ~1 min, b ~5 min (less with Triton), c < 1 min, d ~1 min: about 8 minutes.
#      Everything lands in $OUT (the device tool's folder; results/gpu here when OUT is unset), one JSON per run.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl recbole==1.2.1 colorlog==4.7.2 texttable thop || exit 1
    ls .whl
    [ -f dataset/Instruments/Instruments.inter ] || { echo "dataset/Instruments is not prepared: python -m recbole_famous.data prepare Instruments"; exit 1; }
    echo "ready: run 'bash benchmarks/gpu_check.sh' on the device with carry .whl and dataset/Instruments"
    exit 0
fi

OUT="${OUT:-results/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    python3 --version
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_check: installing the wheels of .whl failed"; exit 1; }
} 2>&1 | tee "$OUT/setup.log"
export PYTHONPATH="/tmp/site:$PWD"
python3 -c "import torch, recbole, recbole_famous; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), '| recbole', recbole.__version__)" 2>&1 | tee -a "$OUT/setup.log"
python3 -c "import triton; print('triton imports:', triton.__version__)" 2>&1 | tail -1 | tee -a "$OUT/setup.log"
python3 -c "import mamba_ssm; print('mamba-ssm imports:', mamba_ssm.__version__)" 2>&1 | tail -1 | tee -a "$OUT/setup.log"
python3 -c "from recbole_famous.model.mamba.scan import choose_backend; print('Mamba scan on CUDA:', \
choose_backend('cuda'))" 2>&1 | tail -1 | tee -a "$OUT/setup.log"

# a. Triton against the PyTorch loop on CUDA (exit 1: mismatch, 2: no CUDA or no triton), then the micro-benchmark.
python3 benchmarks/bench_mamba_scan_cuda.py --json "$OUT/mamba_scan_cuda.json" 2>&1 | tee "$OUT/mamba_scan_cuda.log"
scan_rc=${PIPESTATUS[0]}
if [ "$scan_rc" = 1 ]; then
    echo "gpu_check: the Triton scan does NOT match the PyTorch loop on CUDA: epochs below on the PyTorch scan" \
        | tee -a "$OUT/setup.log"
    export RECBOLE_FAMOUS_MAMBA_SCAN=torch
fi

# b. Epochs at the paper's batch 4096 (33 steps an epoch on Instruments), 2 each.
python3 benchmarks/gpu_epochs.py --device cuda --dataset Instruments --epochs 2 --json "$OUT/gpu_epochs.json" \
    --set train_batch_size=4096 --models SASRec Mamba4Rec FamouSRec:spe_mode=sampled,expert_input=history \
    FamouSRec "FamouSRec:spe_mode=sampled,expert_input=history,experts=[attention,gru,mlp]" \
    2>&1 | tee "$OUT/gpu_epochs.log"
epochs_rc=${PIPESTATUS[0]}

# c. mamba-ssm parity, where it imports.
python3 benchmarks/gpu_mamba_parity.py 2>&1 | tee "$OUT/mamba_parity.log"
parity_rc=${PIPESTATUS[0]}
[ "$parity_rc" = 2 ] && echo "gpu_check: mamba-ssm parity not checked (exit 2: CUDA or mamba-ssm missing, reason above)"

# d. Mamba4Rec on the PyTorch scan, the reference of (b).
RECBOLE_FAMOUS_MAMBA_SCAN=torch python3 benchmarks/gpu_epochs.py --device cuda --dataset Instruments --epochs 2 \
    --json "$OUT/gpu_epochs_torch_scan.json" --set train_batch_size=4096 --models SASRec Mamba4Rec \
    2>&1 | tee "$OUT/gpu_epochs_torch_scan.log"
echo "gpu_check: scan check exit $scan_rc, gpu_epochs exit $epochs_rc, mamba parity exit $parity_rc" \
    | tee -a "$OUT/setup.log"
exit "$epochs_rc"
