"""SASRec training-epoch time on ml-100k with and without RecBole's import-time anomaly detection (compat fix 2).

Both epochs run in one process, on the same data and the same initial weights:
  python benchmarks/bench_anomaly_fix.py [--batches N]   (default: one full epoch each)
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from recbole_famous import pipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=0, help="limit each epoch to N batches (0: full epoch)")
    args = parser.parse_args()
    config = pipeline.build_config("SASRec", "ml-100k", overrides={"show_progress": False, "state": "WARNING",
                                                                   "reproducibility": True})
    pipeline.init_seed(config)
    train_data, _, _ = pipeline.data_preparation(config, pipeline.create_dataset(config))
    base = pipeline.build_model(config, train_data._dataset)
    print(f"torch threads: {torch.get_num_threads()}, training sequences: {len(train_data._dataset)}, "
          f"batches/epoch: {len(train_data)}")
    times = {}
    for anomaly in (False, True):
        model = copy.deepcopy(base).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.autograd.set_detect_anomaly(anomaly)
        start = time.perf_counter()
        for i, batch in enumerate(train_data):
            if args.batches and i >= args.batches:
                break
            opt.zero_grad()
            model.calculate_loss(batch).backward()
            opt.step()
        times[anomaly] = time.perf_counter() - start
        print(f"anomaly detection {'on ' if anomaly else 'off'}: {times[anomaly]:.1f} s", flush=True)
    torch.autograd.set_detect_anomaly(False)
    print(f"slowdown with anomaly detection on: {times[True] / times[False]:.2f}x")


if __name__ == "__main__":
    main()
