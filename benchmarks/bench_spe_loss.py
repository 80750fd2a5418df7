"""L_spe (Eqs. 11-13) alone: forward + backward time against plain cross-entropies of the same size.

One batch of random last-position representations (scaled like trained ones), ``spe_mode`` sampled
(others: one mismatched component per user and expert) or exact (all K² pairs), one torch thread,
median CPU time of ``--repeats`` runs after one warm-up. The reference is ``cross_entropy`` over the
(B·K, |I|) logits of ``own`` (what L_rec would cost with K heads), once and twice. Each ``--blocks`` value
is a ``block_values`` of ``specialization_loss`` (log-probabilities per block; 0 = the whole batch in one
block, as before blocks), all timed in the same run on the same tensors, ratios against the first.

    python benchmarks/bench_spe_loss.py --items 9923 --mode sampled
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from recbole_famous.model.losses import BLOCK_VALUES, specialization_loss  # noqa: E402


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
    ap.add_argument("--blocks", type=int, nargs="+", default=[0, BLOCK_VALUES],
                    help="block_values to compare (0: one block for the whole batch)")
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


if __name__ == "__main__":
    main()
