"""Seconds per training epoch and peak device memory of SASRec and FamouSRec on one device (issue 13's GPU check).

Each model is trained for ``--epochs`` epochs with the plugin's Trainer (RecBole's batches, the project's protocol
of ``props/overall.yaml``, validation after every epoch, no checkpoint written), on its own freshly built data, one
model after the other on the same device. Written per model: the seconds of each training epoch (the Trainer's
``epoch_seconds``; RecBole's loop reads every batch's loss back, so a CUDA epoch's time includes its kernels), the
seconds of one full-ranking validation pass, validation NDCG@10 after each epoch, peak memory
(``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on a CPU), and how Mamba's scan ran. The
ratio of each model's mean epoch to the first model's (SASRec) is printed and kept.

    python benchmarks/gpu_epochs.py --dataset Instruments --epochs 3 --json gpu_epochs.json \
        --models SASRec FamouSRec:spe_mode=sampled,expert_input=history FamouSRec

A model is ``NAME`` or ``NAME:key=value,key=value`` (values read as YAML; commas inside brackets belong to the value,
so ``FamouSRec:experts=[attention,gru,mlp]`` works). ``--set key=value`` applies to every
model (e.g. ``--set data_path=...``). ``--device cpu`` runs the same on the CPU (what the tests do, on a small
slice). ``benchmarks/gpu_check.sh`` is the prepared script that runs this on a CUDA machine.
"""
import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time


import recbole_famous  # noqa: F401  (RecBole compatibility fixes first)
import torch
import yaml


def parse_model(spec: str) -> tuple[str, dict]:
    """``"FamouSRec:spe_mode=exact,mu_align=0"`` -> ``("FamouSRec", {"spe_mode": "exact", "mu_align": 0})``."""
    name, _, rest = spec.partition(":")
    return name, parse_sets(split_top_level(rest) if rest else [])


def split_top_level(text: str) -> list[str]:
    """Split ``text`` at the commas outside brackets: ``"a=1,experts=[gru,mlp]"`` -> ``["a=1", "experts=[gru,mlp]"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def parse_sets(items) -> dict:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"gpu_epochs: {item!r} is not key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise SystemExit(f"gpu_epochs: the value of {item!r} is not YAML ({str(err).splitlines()[0]})")
    return out


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; the process's peak so far


def mamba_scan(device: str) -> str:
    """Which selective scan a Mamba layer runs on ``device`` (``recbole_famous.model.mamba.scan.choose_backend``)."""
    from recbole_famous.model.mamba.scan import choose_backend

    names = {"cpp": "our C++ CPU kernel", "torch": "plain PyTorch scan", "triton": "our Triton kernel",
             "mamba_ssm": "mamba-ssm kernels"}
    try:
        return names[choose_backend(device)]
    except RuntimeError as exc:  # a forced backend that cannot run: the run fails the same way
        return str(exc)


def train_one(spec: str, dataset: str, epochs: int, device: str, common: dict, workdir: str) -> dict:
    from recbole_famous import pipeline

    name, own = parse_model(spec)
    overrides = {"epochs": epochs, "eval_step": 1, "stopping_step": epochs + 1, "show_progress": False,
                 "state": "WARNING", "use_gpu": device == "cuda", "checkpoint_dir": os.path.join(workdir, "saved"),
                 **common, **own}
    config = pipeline.build_config(name, dataset, overrides=overrides)
    pipeline.init_seed(config)
    train_data, valid_data, _ = pipeline.data_preparation(config, pipeline.create_dataset(config))
    model = pipeline.build_model(config, train_data._dataset)
    trainer = pipeline.get_trainer(config, model, output_dir=os.path.join(workdir, "runs", name))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    start = time.perf_counter()
    trainer.evaluate(valid_data, load_best_model=False)
    if device == "cuda":
        torch.cuda.synchronize()
    valid_seconds = time.perf_counter() - start
    return {"model": spec, "name": name, "overrides": own, "epochs": epochs,
            "epoch_seconds": [round(s, 3) for s in trainer.epoch_seconds],
            "mean_epoch_seconds": round(sum(trainer.epoch_seconds) / len(trainer.epoch_seconds), 3),
            "valid_seconds": round(valid_seconds, 3),
            "valid_ndcg10": {int(e): round(float(v), 4) for e, v in trainer.valid_scores.items()},
            "train_batches": len(train_data), "batch_size": config["train_batch_size"],
            "peak_memory_mb": round(peak_memory_mb(device), 1),
            "peak_memory_kind": "torch.cuda.max_memory_allocated" if device == "cuda" else "process peak RSS",
            "parameters": sum(p.numel() for p in model.parameters()),
            "mamba_scan": mamba_scan(device) if "mamba" in str(config["experts"] or "") + name.lower() else None}


def machine(device: str) -> dict:
    out = {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cuda"] = torch.version.cuda
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="Instruments")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["SASRec", "FamouSRec:spe_mode=sampled,expert_input=history",
                                                    "FamouSRec"])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every model")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_epochs: CUDA is not available here (torch.cuda.is_available() is False); "
              "use --device cpu to run on the CPU", file=sys.stderr)
        return 2
    common = parse_sets(args.set)
    results = {"dataset": args.dataset, "machine": machine(args.device), "runs": []}
    with tempfile.TemporaryDirectory(prefix="gpu_epochs-") as workdir:
        for spec in args.models:
            print(f"[{spec}] {args.epochs} epoch(s) on {args.dataset}, {args.device} ...", flush=True)
            run = train_one(spec, args.dataset, args.epochs, args.device, common, workdir)
            results["runs"].append(run)
            print(f"[{spec}] s/epoch {run['epoch_seconds']}, valid pass {run['valid_seconds']} s, valid NDCG@10 "
                  f"{list(run['valid_ndcg10'].values())}, peak {run['peak_memory_mb']} MB", flush=True)
            if args.json:  # after every model, so a run cut short keeps what it measured
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    base = results["runs"][0]["mean_epoch_seconds"]
    for run in results["runs"]:
        run["epoch_ratio_to_first"] = round(run["mean_epoch_seconds"] / base, 3) if base else None
        print(f"{run['model']}: {run['mean_epoch_seconds']} s/epoch ({run['epoch_ratio_to_first']}x "
              f"{results['runs'][0]['model']}), peak {run['peak_memory_mb']} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
