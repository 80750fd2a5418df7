"""Training epoch time with length-grouped batches against RecBole's own, per model, in one run, and quality.

For each model two copies are built from the same seed: one trains on RecBole's batches, one on length-grouped,
trimmed batches (``recbole_famous/data/length_batches.py``); the two loaders are stepped in lockstep, batch i of
one then batch i of the other (of every model given), so that a shared machine's load falls on both alike. The time of a step includes
fetching its batch (RecBole's indexing, and the trimming). Prints, per model, the mean step time and the epoch
time (measured, or mean step x batches per epoch with ``--batches``: both loaders shuffle their batches, so the
first N are a random sample of the epoch's) and their ratio; with ``--epochs E`` the models train E whole epochs
and the validation NDCG@10 of each copy is printed after each epoch.

A model spec is ``Name`` or ``Name:key=value,key=value`` (overrides, read as yaml). ``--bf16`` adds a third copy
on grouped batches under ``torch.autocast("cpu", torch.bfloat16)``. ``--profile`` prints torch.profiler's top
operators for the grouped copy of each model over its timed batches. A model that declares nothing
(``length_batches``; FamouSRec today) is timed on RecBole's batches only, and compared with SASRec's grouped
epoch. All copies of all models step in lockstep.

    nice python benchmarks/bench_length_batches.py --dataset Instruments --batches 40 \
        --models SASRec GRU4Rec Mamba4Rec FMLPRec CL4SRec DuoRec Crocodile EMKD BERT4Rec
    nice python benchmarks/bench_length_batches.py --dataset Instruments --epochs 2 --models SASRec
"""
import argparse
import contextlib
import os
import platform
import tempfile
import time


import recbole_famous  # noqa: F401  (RecBole compatibility fixes first)
import torch
import yaml


def parse_spec(spec: str):
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


class Copy:
    """One model on one kind of batches: model, optimizer, its loader's iterator, and its seconds."""

    def __init__(self, label, config, model_class, dataset, loader, autocast=False, split=0):
        from recbole.utils import init_seed

        from recbole_famous.data import length_batches as lb

        init_seed(config["seed"], config["reproducibility"])
        self.label, self.config, self.loader, self.autocast = label, config, loader, autocast
        self.model = lb.split_class(model_class, split)(config, dataset).train()
        self.optim = torch.optim.Adam(self.model.parameters(), lr=config["learning_rate"])
        self.seconds, self.steps, self.losses = 0.0, 0, []
        self.iterator = None

    def start_epoch(self, sample=None):
        """An epoch of the loader, or with ``sample=N`` N of its batches: the first N of RecBole's (shuffled, all
        of one width), or for grouped batches N spread evenly over the epoch's batches ordered by width (a
        stratified sample: mean step x batches estimates the epoch with little variance)."""
        if sample is None or not hasattr(self.loader, "lengths"):
            self.iterator = iter(self.loader)
            return
        from recbole_famous.data import length_batches as lb

        loader = self.loader
        batches = lb.epoch_batches(loader.lengths, loader.global_step, loader.generator, True)
        batches.sort(key=lambda b: int(loader.lengths[b].max()))
        picked = [batches[int((k + 0.5) * len(batches) / sample)] for k in range(sample)]
        self.iterator = (loader.collate_fn(b.tolist()) for b in picked)

    def step(self) -> bool:
        t0 = time.perf_counter()
        batch = next(self.iterator, None)
        if batch is None:
            return False
        self.optim.zero_grad()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            loss = self.model.calculate_loss(batch)
            loss = sum(loss) if isinstance(loss, tuple) else loss
        loss.backward()
        self.optim.step()
        self.seconds += time.perf_counter() - t0
        self.steps += 1
        self.losses.append(loss.item())
        return True

    def valid_ndcg(self, valid_data, output_dir) -> float:
        from recbole_famous.trainer import Trainer

        trainer = Trainer(self.config, self.model, output_dir)
        result = trainer.evaluate(valid_data, load_best_model=False)
        self.model.train()
        return float(result["ndcg@10"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="Instruments")
    ap.add_argument("--models", nargs="+", default=["SASRec"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--batches", type=int, default=None, help="time this many batches per copy (no quality)")
    ap.add_argument("--epochs", type=int, default=1, help="whole epochs, with validation NDCG@10 after each")
    ap.add_argument("--bf16", action="store_true", help="also a grouped copy under bf16 autocast")
    ap.add_argument("--split", type=int, default=0, help="also a copy on RecBole's batches, encoder split in N")
    ap.add_argument("--no-grouped", dest="grouped", action="store_false", help="no grouped copies")
    ap.add_argument("--profile", action="store_true", help="torch.profiler's top operators of the grouped copy")
    ap.add_argument("--train_batch_size", type=int, default=None)
    ap.add_argument("--learning_rate", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from recbole.data import data_preparation
    from recbole.data.dataloader import TrainDataLoader
    from recbole.utils import init_seed

    from recbole_famous import compat
    from recbole_famous.data import length_batches as lb
    from recbole_famous.pipeline import build_config

    common = {"show_progress": False, "state": "WARNING", "use_gpu": False, "eval_batch_size": 1024}
    for key in ("train_batch_size", "learning_rate"):
        if getattr(args, key) is not None:
            common[key] = getattr(args, key)
    base = build_config("SASRec", args.dataset, overrides=common)
    init_seed(base["seed"], base["reproducibility"])
    t0 = time.perf_counter()
    train_data, valid_data, _ = data_preparation(base, compat.sequential_dataset_class()(base))
    train_dataset = train_data._dataset
    lengths = torch.as_tensor(train_dataset.inter_feat["item_length"]).long()
    print(f"{args.dataset}: {len(train_dataset)} training samples, mean length {lengths.double().mean():.2f}, "
          f"median {lengths.median().item()}, {lengths.sum().item() / (lengths.numel() * base['MAX_ITEM_LIST_LENGTH']):.1%}"
          f" of the padded positions real; data {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    out_dir = tempfile.mkdtemp(prefix="bench_length_batches_")
    blocks = []  # (spec, copies)
    for spec in args.models:
        name, overrides = parse_spec(spec)
        config = build_config(name, args.dataset, overrides={**common, **overrides, "checkpoint_dir": out_dir,
                                                             "length_batches": False})
        cls = config.model_class
        copies = [Copy("recbole", config, cls, train_dataset, TrainDataLoader(config, train_dataset, None, shuffle=True))]
        if args.split > 1 and name in lb.SPLIT_MODELS:
            copies.append(Copy(f"split{args.split}", config, cls, train_dataset,
                               TrainDataLoader(config, train_dataset, None, shuffle=True), split=args.split))
        if args.grouped and lb.declared(cls) is not None:
            copies.append(Copy("grouped", config, cls, train_dataset,
                               lb.train_loader_class()(config, train_dataset, None, shuffle=True)))
            if args.bf16:
                copies.append(Copy("grouped+bf16", config, cls, train_dataset,
                                   lb.train_loader_class()(config, train_dataset, None, shuffle=True), autocast=True))
        blocks.append((spec, copies))
    every = [c for _, copies in blocks for c in copies]
    epochs = 1 if args.batches else args.epochs
    ndcg = {id(c): [] for c in every}
    for epoch in range(epochs):
        for c in every:
            c.start_epoch(args.batches)
        n = 0
        while True:  # every copy of every model in lockstep: a shared machine's load falls on all alike
            alive = [c.step() for c in every]
            n += 1
            if not all(alive) or (args.batches and n >= args.batches):
                break
        if not args.batches:
            for c in every:
                ndcg[id(c)].append(round(c.valid_ndcg(valid_data, out_dir), 4))
            print(f"epoch {epoch}: " + "; ".join(f"{spec} {c.label} NDCG@10 {ndcg[id(c)][-1]}"
                                                 for spec, copies in blocks for c in copies), flush=True)
    if args.profile:
        for spec, copies in blocks:
            for c in copies[:2]:
                c.start_epoch()
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    for _ in range(10):
                        c.step()
                print(f"\n{spec} {c.label}, torch.profiler over 10 steps (self CPU time):")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    # a model spec may set its own train_batch_size: each copy's epoch is its own loader's batches
    total = len(blocks[0][1][0].loader)
    steps = blocks[0][1][0].steps
    how = "measured" if steps >= total * epochs else f"mean of {steps} steps x the batches of each copy's epoch"
    sasrec = {c.label: c.seconds / c.steps * len(c.loader) for spec, copies in blocks if spec == "SASRec"
              for c in copies}
    print(f"\nseconds per epoch ({how}); x: RecBole's batches / this; vs SASRec: this / SASRec's on the same kind"
          " of batches (SASRec's grouped for a model with RecBole's only)")
    for spec, copies in blocks:
        ref = copies[0].seconds / copies[0].steps * len(copies[0].loader)
        cells = []
        for c in copies:
            per_epoch = c.seconds / c.steps * len(c.loader)
            vs = sasrec.get("grouped" if len(copies) == 1 else c.label)
            cells.append(f"{c.label} {per_epoch:7.1f} s ({ref / per_epoch:.2f}x"
                         + (f", {per_epoch / vs:.2f}x SASRec's" if vs and spec != "SASRec" else "") + ")"
                         + (f" NDCG@10 {ndcg[id(c)]}" if ndcg[id(c)] else ""))
        print(f"  {spec:48s} " + "  ".join(cells), flush=True)

if __name__ == "__main__":
    main()
