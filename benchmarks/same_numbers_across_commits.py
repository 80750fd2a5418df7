"""Does a change keep FamouSRec's numbers? The same small models, batch and seeds on this tree and on a commit.

For each configuration (``expert_input`` window and history, ``spe_mode`` sampled and exact, with ``spe_users``,
two layers, ``gate_input: band_energy`` + ``train_routing: switch``; dropout off, so that no random draw depends on
the order of computation): the four loss parts of one training step, every parameter's gradient and the
full-ranking scores in eval mode. The other commit is checked out into a temporary git worktree and run in a
subprocess of the same Python; prints the largest differences per configuration.

    python benchmarks/same_numbers_across_commits.py --against e9b6024
"""
import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = [dict(expert_input=e, spe_mode=m, **extra) for e in ("window", "history") for m in ("sampled", "exact")
           for extra in ({}, {"spe_users": 5}, {"n_layers": 2}, {"gate_input": "band_energy", "train_routing": "switch"})]

STEP = r"""
import sys, torch
root, out, configs = sys.argv[1], sys.argv[2], eval(sys.argv[3])
sys.path[:0] = [root, root + "/tests"]
from famousrec_fakes import make_batch, make_model
result = []
for cfg in configs:
    torch.manual_seed(0)
    model = make_model(n_items=40, max_len=12, expert_parts=4, **cfg)
    batch = make_batch(batch=11, max_len=12, n_items=40, seed=3)
    torch.manual_seed(1)
    losses = model.calculate_loss(batch)
    sum(losses).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        scores = model.eval().full_sort_predict(batch)
    result.append((torch.stack(losses).detach(), grads, scores))
torch.save(result, out)
"""


def step_results(root, out):
    subprocess.run([sys.executable, "-c", STEP, root, out, repr(CONFIGS)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    import torch
    return torch.load(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="a commit (or branch) to compare this tree with")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="same_numbers_") as tmp:
        other = os.path.join(tmp, "tree")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", other, args.against], check=True,
                       capture_output=True)
        try:
            theirs = step_results(other, os.path.join(tmp, "theirs.pt"))
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", other], capture_output=True)
        ours = step_results(ROOT, os.path.join(tmp, "ours.pt"))
    print(f"this tree against {args.against}: largest differences (losses absolute; gradients relative to each "
          "parameter's largest entry; scores absolute)")
    for cfg, (la, ga, sa), (lb, gb, sb) in zip(CONFIGS, theirs, ours):
        if set(ga) != set(gb):
            print(f"  {cfg}: different parameters get gradients: {sorted(set(ga) ^ set(gb))}")
            continue
        grad = max(((ga[n] - gb[n]).abs().max() / ga[n].abs().max().clamp(min=1e-12)).item() for n in ga)
        print(f"  {cfg}: losses {(la - lb).abs().max().item():.1e}, gradients {grad:.1e}, "
              f"scores {(sa - sb).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
