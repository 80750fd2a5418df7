"""mamba-ssm's ``Mamba`` against our ``MambaBlock`` with the same weights (needs CUDA and mamba-ssm).

    python benchmarks/gpu_mamba_parity.py [--batch 256 --length 50 --d-model 64 --d-state 32]

Checks, each to 1e-4 (max absolute difference relative to the largest reference value):
  1. ours on CUDA (which dispatches to mamba-ssm's kernels) == mamba-ssm on CUDA: outputs and grads;
  2. ours on the CPU (our C++ scan, float32) == mamba-ssm on CUDA: outputs and grads, which is the
     real cross-check of our kernel against the reference implementation.
Prints the forward + backward time of each. Exits 1 on a mismatch, 2 when CUDA or mamba-ssm is
missing (with the reason in one line).
"""
import argparse
import statistics
import sys
import time


import torch

from recbole_famous.model.mamba import MambaBlock


def timed(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_block(block, x, g):
    x = x.detach().clone().requires_grad_()
    block.zero_grad(set_to_none=True)
    y = block(x)
    (y * g).sum().backward()
    grads = {n: p.grad.detach().float().cpu() for n, p in block.named_parameters()}
    return y.detach().float().cpu(), x.grad.detach().float().cpu(), grads


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--d-state", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("not checked: no CUDA device here")
        sys.exit(2)
    try:
        from mamba_ssm import Mamba
    except Exception as exc:
        print(f"not checked: mamba-ssm does not import ({type(exc).__name__}: {exc})")
        sys.exit(2)

    torch.manual_seed(0)
    dev = torch.device("cuda")
    ref = Mamba(d_model=args.d_model, d_state=args.d_state, d_conv=4, expand=2).to(dev)
    ours = MambaBlock(args.d_model, d_state=args.d_state, d_conv=4, expand=2).to(dev)
    ours.load_state_dict(ref.state_dict())  # strict: same names and shapes
    x = torch.randn(args.batch, args.length, args.d_model, device=dev)
    g = torch.randn_like(x)

    y_ref, gx_ref, gp_ref = run_block(ref, x, g)
    checks = {}
    y, gx, gp = run_block(ours, x, g)
    checks["ours CUDA vs mamba-ssm: output"] = rel(y, y_ref)
    checks["ours CUDA vs mamba-ssm: grad input"] = rel(gx, gx_ref)
    checks["ours CUDA vs mamba-ssm: worst grad parameter"] = max(rel(gp[n], gp_ref[n]) for n in gp_ref)
    ours_cpu = MambaBlock(args.d_model, d_state=args.d_state, d_conv=4, expand=2)
    ours_cpu.load_state_dict({k: v.cpu() for k, v in ref.state_dict().items()})
    y, gx, gp = run_block(ours_cpu, x.cpu(), g.cpu())
    checks["ours CPU kernel vs mamba-ssm: output"] = rel(y, y_ref)
    checks["ours CPU kernel vs mamba-ssm: grad input"] = rel(gx, gx_ref)
    worst = max(gp_ref, key=lambda n: rel(gp[n], gp_ref[n]))
    checks[f"ours CPU kernel vs mamba-ssm: worst grad parameter ({worst})"] = rel(gp[worst], gp_ref[worst])

    print(f"{torch.cuda.get_device_name()}; batch {args.batch}, length {args.length}, "
          f"d_model {args.d_model}, d_state {args.d_state}, expand 2, float32")
    failed = False
    for name, value in checks.items():
        ok = value <= args.tol
        failed |= not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {value:.2e} (max abs diff / max abs ref)")

    def step(block, inp):
        def fn():
            block.zero_grad(set_to_none=True)
            (block(inp) * g.to(inp.device)).sum().backward()
        return fn

    sync = torch.cuda.synchronize
    t_ref = timed(step(ref, x), args.repeats, sync)
    t_ours = timed(step(ours, x), args.repeats, sync)
    t_cpu = timed(step(ours_cpu, x.cpu()), max(3, args.repeats // 5), lambda: None)
    print(f"  fwd+bwd: mamba-ssm CUDA {t_ref * 1e3:.2f} ms, ours CUDA {t_ours * 1e3:.2f} ms, "
          f"ours CPU ({torch.get_num_threads()} threads) {t_cpu * 1e3:.1f} ms")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
