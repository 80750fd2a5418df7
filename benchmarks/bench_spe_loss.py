"""L_spe (Eqs. 11-13) alone: forward + backward time against plain cross-entropies of the same size.

One batch of random last-position representations (scaled like trained ones), ``spe_mode`` sampled
(others: one mismatched component per user and expert) or exact (all K² pairs), one torch thread,
median CPU time of ``--repeats`` runs after one warm-up. The reference is ``cross_entropy`` over the
(B·K, |I|) logits of ``own`` (what L_rec would cost with K heads), once and twice.

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

from recbole_famous.model.losses import specialization_loss  # noqa: E402


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
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    b, k, n, d = args.batch, args.experts, args.items, args.hidden
    m = 1 if args.mode == "sampled" else k
    own = (torch.randn(b, k, d) * 0.3).requires_grad_()
    others = (torch.randn(b, m, k, d) * 0.3).requires_grad_()
    items = (torch.randn(n, d) * 0.3).requires_grad_()
    target = torch.randint(0, n, (b * k,))
    spe = cpu_ms(lambda: specialization_loss(own, others, items, sampled=m == 1).backward(), args.repeats)
    ce = cpu_ms(lambda: F.cross_entropy(own.reshape(-1, d) @ items.t(), target).backward(), args.repeats)
    print(f"B {b}, K {k}, |I| {n}, d {d}, mode {args.mode}, one thread, median CPU ms of {args.repeats}:")
    print(f"  L_spe forward + backward  {spe:8.1f} ms")
    print(f"  cross-entropy (B*K, |I|)  {ce:8.1f} ms  (x2: {2 * ce:.1f} ms; L_spe / 2 CE = {spe / (2 * ce):.2f})")


if __name__ == "__main__":
    main()
