"""Per periodic user's period (and repeat user's run length r): top-1 expert shares and NDCG@10 on the valid split
of a trained FamouSRec checkpoint (docs/results/synth/README.md, SynD).

    python benchmarks/synth_by_period.py CHECKPOINT.pth SynD dataset

Run from the repository root (the data path of the checkpoint's run). Period and r are read back from each
history (the smallest period with the most repeats; the most common inner run length).
"""
import sys, math, collections
import torch
torch.set_num_threads(1)
from recbole_famous import pipeline
from recbole_famous.bench.synth import user_ranks
from recbole_famous.data.synth import read_types
ckpt, name, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
t = pipeline.load_trained(ckpt, overrides={"data_path": data_dir})
model = t.model.eval()
types = read_types(name, data_dir)
seqs = collections.defaultdict(list)
for line in list(open(f"{data_dir}/{name}/{name}.inter"))[1:]:
    u, i, ts = line.rstrip("\n").split("\t"); seqs[u].append((float(ts), i))
def period(seq):  # smallest p with most matches seq[t]==seq[t-p]
    best = max(range(1, min(13, len(seq))), key=lambda p: (sum(seq[k] == seq[k - p] for k in range(p, len(seq))) / max(1, len(seq) - p), -p))
    return best
def runlen(seq):
    runs, c = [], 1
    for a, b in zip(seq, seq[1:]):
        if a == b: c += 1
        else: runs.append(c); c = 1
    inner = runs[1:] or runs
    return collections.Counter(inner).most_common(1)[0][0]
r = user_ranks(model, t.valid_data)
groups = collections.defaultdict(list)
for u, (rank, j) in r.items():
    s = [i for _, i in sorted(seqs[u])]
    ty = types[u]
    g = f"{ty} p={period(s)}" if ty.startswith("periodic") else (f"{ty} r={runlen(s)}" if ty == "repeat" else ty)
    groups[g].append((rank, j))
for g in sorted(groups):
    v = groups[g]
    nd = sum(1 / math.log2(rk + 2) if rk < 10 else 0 for rk, _ in v) / len(v)
    sh = collections.Counter(model.kinds[j] for _, j in v)
    print(f"{g:14s} n={len(v):3d} ndcg={nd:.3f} " + " ".join(f"{k} {c/len(v):.2f}" for k, c in sh.most_common()))
