"""One training epoch of Mamba4Rec and FMLP-Rec against SASRec, on the same batches, in one run.

The models are built from their props (the project protocol: CE over all items, length 50, batch
256) and trained on the same train dataloader; every batch is given to each model in turn (forward,
backward, Adam), so that a shared machine's load falls on all of them alike. Prints the mean step
time per model, the epoch time (measured, or mean step x batches per epoch with ``--batches``),
and its ratio to SASRec.

    nice python benchmarks/bench_epoch_time.py --dataset ml-100k [--threads 1] [--batches N]
"""
import argparse
import os
import platform
import time


import recbole_famous  # noqa: F401  (RecBole compatibility fixes first)
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=["SASRec", "FMLPRec", "Mamba4Rec"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--batches", type=int, default=None, help="stop after this many batches")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from recbole_famous import pipeline

    overrides = {"show_progress": False, "state": "WARNING", "use_gpu": False}
    configs = {m: pipeline.build_config(m, args.dataset, overrides=overrides) for m in args.models}
    first = configs[args.models[0]]
    pipeline.init_seed(first)
    train_data, _, _ = pipeline.data_preparation(first, pipeline.create_dataset(first))
    models, optims, seconds = {}, {}, {}
    for name, config in configs.items():
        models[name] = pipeline.build_model(config, train_data._dataset).train()
        optims[name] = torch.optim.Adam(models[name].parameters(), lr=config["learning_rate"])
        seconds[name] = 0.0
    n = 0
    for batch in train_data:
        for name, model in models.items():
            t0 = time.perf_counter()
            optims[name].zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optims[name].step()
            seconds[name] += time.perf_counter() - t0
        n += 1
        if args.batches and n >= args.batches:
            break
    total = len(train_data)
    print(f"{args.dataset}: {n} of {total} train batches of {first['train_batch_size']}, length "
          f"{first['MAX_ITEM_LIST_LENGTH']}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); seed {first['seed']}")
    base = seconds.get("SASRec")
    for name, s in seconds.items():
        ratio = f"  {s / base:.2f}x SASRec" if base else ""
        print(f"  {name:10s} {s / n * 1e3:8.1f} ms per step, {s / n * total:8.1f} s per epoch "
              f"({'measured' if n == total else f'{n} steps x {total / n:.1f}'}){ratio}")


if __name__ == "__main__":
    main()
