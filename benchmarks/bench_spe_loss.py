"""L_spe (Eqs. 11-13) alone: forward + backward time against plain cross-entropies of the same size.

One batch of random last-position representations (scaled like trained ones), ``spe_mode`` sampled
(others: one mismatched component per user and expert) or exact (all K² pairs), one torch thread,
median CPU time of ``--repeats`` runs after one warm-up. The reference is ``cross_entropy`` over the
(B·K, |I|) logits of ``own`` (what L_rec would cost with K heads), once and twice. Each ``--blocks`` value
is a ``block_values`` of ``specialization_loss`` (log-probabilities per block; 0 = the whole batch in one
block, as before blocks), all timed in the same run on the same tensors, ratios against the first. On CPU
float32 L_spe runs its fused C++ kernel (``spe_kernels.py``); ``RECBOLE_FAMOUS_SPE_KERNEL=torch`` times the
PyTorch operators instead.
``--profile`` then splits one default-block forward + backward by torch.profiler into the logits' matrix
products (``aten::mm`` / ``addmm``: the logits and their gradients, 3 x 2K x B x |I| x d multiply-adds with
``sampled``), the per-row sums over items (``aten::bmm``, ``_rowdot``) and everything else (softmax, exp,
the gradients' elementwise passes): what a fused kernel could and could not save.

    python benchmarks/bench_spe_loss.py --items 9923 --mode sampled --profile
"""
import argparse
import statistics
import time


import torch
import torch.nn.functional as F

from recbole_famous.model.losses import BLOCK_VALUES, KERNEL_BLOCK_VALUES, specialization_loss


def cpu_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--items", type=int, default=9923, help="|I| (Instruments: 9,923)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--mode", choices=("sampled", "exact"), default="sampled")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--blocks", type=int, nargs="+", default=[0, BLOCK_VALUES, KERNEL_BLOCK_VALUES],
                    help="block_values to compare (0: one block for the whole batch)")
    ap.add_argument("--profile", action="store_true", help="matrix products against the rest (torch.profiler)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    b, k, n, d = args.batch, args.experts, args.items, args.hidden
    m = 1 if args.mode == "sampled" else k
    own = (torch.randn(b, k, d) * 0.3).requires_grad_()
    others = (torch.randn(b, m, k, d) * 0.3).requires_grad_()
    items = (torch.randn(n, d) * 0.3).requires_grad_()
    target = torch.randint(0, n, (b * k,))
    ce = cpu_ms(lambda: F.cross_entropy(own.reshape(-1, d) @ items.t(), target).backward(), args.repeats)
    print(f"B {b}, K {k}, |I| {n}, d {d}, mode {args.mode}, one thread, median CPU ms of {args.repeats}:")
    first = None
    for blocks in args.blocks:
        values = blocks if blocks > 0 else b * m * k * n  # 0: everything in one block
        spe = cpu_ms(lambda: specialization_loss(own, others, items, sampled=m == 1, block_values=values).backward(),
                     args.repeats)
        first = first or spe
        label = "one block" if blocks <= 0 else f"blocks of {blocks:,} values"
        print(f"  L_spe forward + backward, {label:<28} {spe:8.1f} ms  ({first / spe:.2f}x the first; "
              f"/ 2 CE = {spe / (2 * ce):.2f})")
    print(f"  cross-entropy (B*K, |I|)  {ce:8.1f} ms")
    if args.profile:
        profile_split(lambda: specialization_loss(own, others, items, sampled=m == 1).backward(), args.repeats)


MATRIX_PRODUCTS = ("aten::mm", "aten::addmm")
ROW_SUMS = ("aten::bmm",)


def profile_split(fn, repeats):
    """Self CPU time per call, by torch.profiler: the logits' matrix products, the row sums, the rest."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows)
    mm = sum(r.self_cpu_time_total for r in rows if r.key in MATRIX_PRODUCTS)
    rs = sum(r.self_cpu_time_total for r in rows if r.key in ROW_SUMS)
    rest = total - mm - rs
    print(f"  profile (default blocks, {repeats} calls), per call: logits' matrix products "
          f"{mm / repeats / 1e3:.1f} ms ({mm / total:.0%}), row sums {rs / repeats / 1e3:.1f} ms ({rs / total:.0%}), "
          f"the rest {rest / repeats / 1e3:.1f} ms ({rest / total:.0%})")
    for r in sorted(rows, key=lambda r: -r.self_cpu_time_total)[:8]:
        print(f"    {r.key:<28} {r.self_cpu_time_total / repeats / 1e3:8.1f} ms  x{r.count // repeats}")


if __name__ == "__main__":
    main()
