"""One Mamba layer's selective scan, forward + backward, on CUDA: the plain PyTorch loop against our Triton kernel.

    python benchmarks/bench_mamba_scan_cuda.py [--batch 4096 --length 50 --d-inner 128 --d-state 32] --json out.json
    python benchmarks/bench_mamba_scan_cuda.py --count-launches [--batch 4096]     # on the CPU, no GPU needed

CUDA mode: first checks the Triton scan against the PyTorch loop on the GPU (output and the gradients of u, delta,
A, B, C, D, z; max abs difference relative to the largest value, tolerance 1e-4), then times forward + backward
(median of --repeats, after a warm-up that compiles the kernels) of: the PyTorch loop with the backward in 64-row
slices (the fallback before issue 36), the PyTorch loop with memory-sized slices (now), the Triton kernel, and
mamba-ssm's kernel where it imports. Inputs as in a Mamba block: softplus step, D skip, z gate, float32. Prints
the ratios and writes everything to --json. Exits 2 (with the reason) when CUDA or triton is missing, 1 on a
parity failure.

--count-launches: counts, with torch.profiler on the CPU, the operators one training step (forward + backward) of
the scan dispatches: every aten operator, and the "kernels" among them (the outermost operators that compute, not
views or allocations; each is at least one CUDA kernel launch). For the PyTorch loop at --batch rows, in 64-row
backward slices and in one slice; for the Triton path, its two kernel launch sites plus the torch operators around
them (the kernels themselves stubbed out, so this runs without a GPU).
"""
import argparse
import json
import os
import statistics
import sys
import time


import torch

from recbole_famous.model.mamba import scan, scan_torch

NO_KERNEL = {"view", "_unsafe_view", "select", "slice", "unsqueeze", "squeeze", "expand", "as_strided", "t",
             "transpose", "permute", "alias", "empty", "empty_like", "empty_strided", "new_empty", "detach",
             "lift_fresh", "reshape", "_reshape_alias", "unbind", "split", "chunk", "narrow", "result_type",
             "resize_", "contiguous", "to", "_to_copy", "numpy_T", "set_", "is_same_size"}


def inputs(batch, length, d_inner, d_state, device, seed=0):
    """u, raw delta, A, B, C, D, z as a Mamba block feeds them (A = -(1..N) per channel), all requiring grad."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    A = -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    xs = [r(batch, length, d_inner), r(batch, length, d_inner) * 0.5 - 4, A, r(batch, length, d_state),
          r(batch, length, d_state), torch.ones(d_inner), r(batch, length, d_inner)]
    return [x.to(device).requires_grad_() for x in xs]


def step(backend, xs, gy):
    """One forward + backward of the scan; returns (output, grads)."""
    for x in xs:
        x.grad = None
    u, dl, A, Bm, Cm, D, z = xs
    out = scan.selective_scan(u, dl, A, Bm, Cm, D=D, z=z, delta_softplus=True, backend=backend)
    out.backward(gy)
    return out.detach(), [x.grad for x in xs]


def timed(fn, repeats):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class fixed_slices:
    """Within the block, the PyTorch fallback's backward takes ``rows`` rows at a time (64: before issue 36)."""

    def __init__(self, rows):
        self.rows, self.saved = rows, scan_torch.backward_chunk

    def __enter__(self):
        scan_torch.backward_chunk = lambda u, N, free_bytes=None: self.rows

    def __exit__(self, *exc):
        scan_torch.backward_chunk = self.saved


def count_ops(fn):
    """(all aten operators, kernels) dispatched by ``fn()``. A kernel: the outermost operator that computes, i.e. an
    aten operator that is not a view or an allocation and is not called by such an operator (``sum`` counts once,
    not again for the ``fill_`` it calls; the copy a ``reshape`` makes counts)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.profiler.function_events if e.name.startswith("aten::")]

    def computes(e):
        return e.name.startswith("aten::") and e.name[6:] not in NO_KERNEL

    def outermost(e):
        p = e.cpu_parent
        while p is not None:
            if computes(p):
                return False
            p = p.cpu_parent
        return True

    kernels = [e for e in events if computes(e) and outermost(e)]
    if os.environ.get("BENCH_LIST_OPS"):
        print(sorted(e.name for e in kernels))
    return len(events), len(kernels)


def count_launches(batch, length, d_inner, d_state):
    xs = inputs(batch, length, d_inner, d_state, "cpu")
    gy = torch.randn(batch, length, d_inner)
    out = {}
    for rows in (64, batch):
        with fixed_slices(rows):
            out[f"torch, backward in {rows}-row slices"] = count_ops(lambda: step("torch", xs, gy))
    st, why = scan.triton_module()
    if st is None:
        out["triton"] = f"not counted: {why}"
        return out

    class Stub:  # stands in for a kernel: counts launches, computes nothing
        launches = 0

        def __getitem__(self, grid):
            def launch(*a, **k):
                Stub.launches += 1
            return launch

    saved = st._scan_fwd, st._scan_bwd
    st._scan_fwd = st._scan_bwd = Stub()
    try:
        ops = count_ops(lambda: step_triton(st, xs, gy))
    finally:
        st._scan_fwd, st._scan_bwd = saved
    out["triton"] = {"kernel launch sites": len(st.launch_sites()), "kernel launches": Stub.launches,
                     "torch operators around them (all, kernels)": ops,
                     "kernels per step": Stub.launches + ops[1]}
    return out


def step_triton(st, xs, gy):
    for x in xs:
        x.grad = None
    u, dl, A, Bm, Cm, D, z = xs
    out = st.selective_scan_triton(u, dl, A, Bm, Cm, D, z, True)
    out.backward(gy)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def cuda_bench(args):
    if not torch.cuda.is_available():
        print("bench_mamba_scan_cuda: not run: CUDA is not available here (torch.cuda.is_available() is False)")
        return 2, None
    if scan.why_not("triton", "cuda"):
        print(f"bench_mamba_scan_cuda: not run: {scan.why_not('triton', 'cuda')}")
        return 2, None
    xs = inputs(args.batch, args.length, args.d_inner, args.d_state, "cuda")
    gy = torch.randn(args.batch, args.length, args.d_inner, device="cuda")
    ref, ref_g = step("torch", xs, gy)
    ref_g = [g.clone() for g in ref_g]
    tri, tri_g = step("triton", xs, gy)
    parity = {"out": rel(tri, ref)}
    parity.update({f"grad {n}": rel(a, b) for n, a, b in zip("u delta A B C D z".split(), tri_g, ref_g)})
    ok = all(v <= args.tol for v in parity.values())
    print(f"{torch.cuda.get_device_name()}: batch {args.batch}, length {args.length}, d_inner {args.d_inner}, "
          f"d_state {args.d_state}, float32")
    for name, v in parity.items():
        print(f"  {'ok  ' if v <= args.tol else 'FAIL'} triton vs torch {name}: {v:.2e} (max abs diff / max abs)")
    seconds = {}
    with fixed_slices(64):
        seconds["torch, 64-row backward slices (before)"] = timed(lambda: step("torch", xs, gy), args.torch_repeats)
    seconds["torch, memory-sized slices"] = timed(lambda: step("torch", xs, gy), args.torch_repeats)
    seconds["triton"] = timed(lambda: step("triton", xs, gy), args.repeats)
    if scan.why_not("mamba_ssm", "cuda") is None:
        seconds["mamba_ssm"] = timed(lambda: step("mamba_ssm", xs, gy), args.repeats)
    for name, s in seconds.items():
        print(f"  fwd+bwd {name}: {s * 1e3:.2f} ms ({s / seconds['triton']:.1f}x triton)")
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "shape": vars(args), "parity": parity, "parity_ok": ok, "seconds": seconds,
              "ratio_torch64_to_triton": seconds["torch, 64-row backward slices (before)"] / seconds["triton"],
              "ratio_torch_to_triton": seconds["torch, memory-sized slices"] / seconds["triton"]}
    print(f"  ratio: torch loop (before) / triton = {result['ratio_torch64_to_triton']:.1f}x, "
          f"torch loop (now) / triton = {result['ratio_torch_to_triton']:.1f}x")
    return (0 if ok else 1), result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--d-inner", type=int, default=128)
    ap.add_argument("--d-state", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--torch-repeats", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--count-launches", action="store_true", help="count operators on the CPU instead")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.count_launches:
        rc, result = 0, count_launches(args.batch, args.length, args.d_inner, args.d_state)
        print(json.dumps(result, indent=1))
    else:
        rc, result = cuda_bench(args)
    if args.json and result is not None:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
