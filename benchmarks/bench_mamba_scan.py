"""Forward + backward of one Mamba block on the CPU: ours against mambapy 1.2.0, same run, same inputs.

    pip install mambapy==1.2.0 --no-deps   # benchmark-only dependency
    nice python benchmarks/bench_mamba_scan.py [--threads 1] [--batch 256 --length 50 --d-model 64 --d-state 16 32]

Wall time is what training waits for; process CPU time (summed over threads) is steadier on a
shared machine, where other people's jobs stretch the wall time. Both blocks get the same weights (the parameter layouts are the same), so their outputs are
compared too. Prints the median time per step of each, the ratio, and where our time goes: the
scan kernel's forward and backward timed alone on tensors of the block's sizes, the rest being
the projections, the convolution and the element-wise ops.
"""
import argparse
import statistics
import time


import torch

from recbole_famous.model.mamba import MambaBlock
from recbole_famous.model.mamba.scan import load_extension


def median_time(fn, repeats, warmup=1, cpu=False):
    """Median wall time of ``fn`` (or, with ``cpu``, (wall, process CPU time))."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return (statistics.median(walls), statistics.median(cpus)) if cpu else statistics.median(walls)


def fwd_bwd(block, x):
    def step():
        block.zero_grad(set_to_none=True)
        x.grad = None
        block(x).square().mean().backward()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--d-state", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--expand", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mambapy-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if load_extension() is None:
        raise SystemExit("the C++ selective scan did not compile; see the warning above")
    from mambapy.mamba import MambaBlock as MambapyBlock, MambaConfig

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, "
          f"length {args.length}, d_model {args.d_model}, expand {args.expand}; float32; "
          f"median of {args.repeats} (ours) / {args.mambapy_repeats} (mambapy) steps")
    for d_state in args.d_state:
        torch.manual_seed(0)
        ours = MambaBlock(args.d_model, d_state=d_state, expand=args.expand)
        ref = MambapyBlock(MambaConfig(d_model=args.d_model, n_layers=1, d_state=d_state,
                                       expand_factor=args.expand, d_conv=4))
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(args.batch, args.length, args.d_model, requires_grad=True)
        with torch.no_grad():
            diff = (ours(x) - ref(x)).abs().max().item()

        t_ours, c_ours = median_time(fwd_bwd(ours, x), args.repeats, cpu=True)
        t_ref, c_ref = median_time(fwd_bwd(ref, x), args.mambapy_repeats, cpu=True)

        print(f"\nd_state {d_state}: max |ours - mambapy| output = {diff:.2e}")
        print(f"  mambapy MambaBlock fwd+bwd  {t_ref * 1e3:9.1f} ms wall {c_ref * 1e3:9.1f} ms CPU")
        print(f"  ours    MambaBlock fwd+bwd  {t_ours * 1e3:9.1f} ms wall {c_ours * 1e3:9.1f} ms CPU"
              f"   -> {t_ref / t_ours:.1f}x faster (wall), {c_ref / c_ours:.1f}x (CPU time)")
        breakdown(ours, x, args.repeats)


def breakdown(block, x, repeats):
    """Our kernels timed alone on the block's own tensors, and a profile of one step."""
    ext = load_extension()
    with torch.no_grad():
        xz = block.in_proj(x)
        Di, R, N = block.d_inner, block.dt_rank, block.d_state
        wT = block.conv1d.weight.view(Di, -1).t().contiguous()
        xc = ext.conv_silu_fwd(xz[..., :Di], wT, block.conv1d.bias)
        xdbl = block.x_proj(xc)
        dp = torch.nn.functional.softplus(block.dt_proj(xdbl[..., :R])).contiguous()
        At = (-torch.exp(block.A_log)).t().contiguous()
        args = (xc, dp, At, xdbl[..., R:R + N], xdbl[..., R + N:], block.D.detach(), xz[..., Di:])
        out, y = ext.scan_fwd(*args)
        g = torch.randn_like(out)
        gxz = torch.empty_like(xz)
        kernels = {
            "scan forward": lambda: ext.scan_fwd(*args),
            "scan backward (recomputes states)": lambda: ext.scan_bwd(*args, y, g, gxz[..., Di:]),
            "conv+silu forward": lambda: ext.conv_silu_fwd(xz[..., :Di], wT, block.conv1d.bias),
            "conv+silu backward": lambda: ext.conv_silu_bwd(xz[..., :Di], wT, block.conv1d.bias, g,
                                                            gxz[..., :Di]),
        }
        for name, fn in kernels.items():
            print(f"    {name:34s}{median_time(fn, repeats) * 1e3:7.1f} ms")
    step = fwd_bwd(block, x)
    step()
    with torch.profiler.profile() as prof:
        for _ in range(repeats):
            step()
    print(f"  profile of our step (self CPU time per step, top ops):")
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    for e in rows:
        print(f"    {e.key:34s}{e.self_cpu_time_total / 1e3 / repeats:7.1f} ms  ({e.count // repeats} calls)")

if __name__ == "__main__":
    main()
