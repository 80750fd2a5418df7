"""FamouSRec (4 experts) vs RecBole's SASRec on the same data and the same batches.

Measures, in one process, with the models interleaved batch by batch so that a shared machine's
load hits both alike:

* training step time (forward + backward + Adam) on the same train batches, and the epoch time it
  implies (median step x batches per epoch);
* the expert-frequency term alone: FamouSRec with ``lambda_spe = 0`` (no K² pairs) vs the default,
  and ``specialization_loss`` forward + backward alone on the pairs of one batch;
* the mamba expert's share: FamouSRec with the mamba expert replaced by an mlp expert;
* full-ranking inference time per user (``full_sort_predict`` on the test users, eval mode).

Goals (issue 5): epoch <= 4x SASRec, inference <= 1.5x SASRec per user.

    nice python benchmarks/bench_famousrec_vs_sasrec.py --dataset ml-100k --batches 12 --json out.json
"""
import argparse
import json
import os
import platform
import statistics
import time


import recbole_famous  # noqa: F401  (RecBole compatibility fixes first)
import torch


def build(model_name, dataset, overrides, data=None):
    from recbole_famous import pipeline

    config = pipeline.build_config(model_name, dataset,
                                   overrides={"show_progress": False, "state": "WARNING", **overrides})
    pipeline.init_seed(config)
    if data is None:
        data = pipeline.data_preparation(config, pipeline.create_dataset(config))
    model = pipeline.build_model(config, data[0]._dataset)
    return model, data


def train_step(model, opt, batch):
    opt.zero_grad()
    losses = model.calculate_loss(batch)
    loss = sum(losses) if isinstance(losses, tuple) else losses
    loss.backward()
    opt.step()


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process): on a shared machine CPU time is the steadier figure."""
    t, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t, time.process_time() - c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--batches", type=int, default=12, help="timed train batches per model (after 2 warm-up)")
    ap.add_argument("--eval-batches", type=int, default=4, help="timed full-ranking batches per model")
    ap.add_argument("--train-batch-size", type=int, default=256)
    ap.add_argument("--eval-batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--eval-only", action="store_true", help="time inference only (no training steps)")
    ap.add_argument("--no-mamba-variant", action="store_true", help="skip the 'mamba replaced by mlp' variant")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    common = {"train_batch_size": args.train_batch_size, "eval_batch_size": args.eval_batch_size,
              "use_gpu": torch.cuda.is_available()}
    sas, data = build("SASRec", args.dataset, common)
    train_data, _, test_data = data
    variants = {"FamouSRec": {}}
    if not args.eval_only:
        variants.update({"FamouSRec lambda_spe=0": {"lambda_spe": 0.0},
                         "FamouSRec spe_mode=sampled": {"spe_mode": "sampled"}})
    if not args.no_mamba_variant and not args.eval_only:
        variants["FamouSRec mamba->mlp"] = {"experts": ["attention", "gru", "mlp", "mlp"]}
    models = {"SASRec": sas}
    for name, extra in variants.items():
        models[name] = build("FamouSRec", args.dataset, {**common, **extra}, data=data)[0]
    device = sas.item_embedding.weight.device
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}

    # ---- training steps on identical batches, interleaved ----
    batches = []
    for i, batch in enumerate([] if args.eval_only else train_data):
        batches.append(batch.to(device))
        if len(batches) == args.batches + 2:
            break
    step_s = {name: [] for name in models}
    for i, batch in enumerate(batches):
        for name, m in models.items():
            m.train()
            s = timed(train_step, m, opts[name], batch)
            if i >= 2:
                step_s[name].append(s)

    # ---- L_spe alone on one batch's pairs ----
    from recbole_famous.model.losses import specialization_loss
    fam = models["FamouSRec"]
    spe_s = []
    if not args.eval_only:
        fam.train()
        b0 = batches[2]
        out, _ = fam.encode(b0[fam.ITEM_SEQ], b0[fam.ITEM_SEQ_LEN], need_pairs="exact")
        pairs = out.pairs.detach().requires_grad_()
        items = fam.item_embedding.weight
    for _ in range(0 if args.eval_only else 5):
        own = out.own.detach().requires_grad_()
        spe_s.append(timed(lambda: specialization_loss(own, pairs, items, fam.spe_chunk_size).backward()))

    # ---- full-ranking inference on the same test users, interleaved ----
    eval_s = {name: [0.0, 0.0] for name in models}
    users = 0
    with torch.no_grad():
        for m in models.values():
            m.eval()
        for i, (interaction, *_rest) in enumerate(test_data):
            if i >= args.eval_batches + 1:
                break
            interaction = interaction.to(device)
            for name, m in models.items():
                s = timed(m.full_sort_predict, interaction)
                if i >= 1:  # first batch is warm-up
                    eval_s[name] = [a + b for a, b in zip(eval_s[name], s)]
            if i >= 1:
                users += len(interaction)
    usage = fam.expert_usage_share()

    # ---- inference with every user forced onto one expert: the cost of each kind at k = 1 ----
    forced = {}
    with torch.no_grad():
        for j, kind in enumerate(fam.kinds):
            fam.force_expert = j
            tot = {"SASRec": [0.0, 0.0], "FamouSRec": [0.0, 0.0]}
            for i, (interaction, *_rest) in enumerate(test_data):
                if i >= args.eval_batches + 1:
                    break
                interaction = interaction.to(device)
                for name in tot:
                    s = timed(models[name].full_sort_predict, interaction)
                    if i >= 1:
                        tot[name] = [a + b for a, b in zip(tot[name], s)]
            forced[f"{j}:{kind}"] = {"wall": round(tot["FamouSRec"][0] / tot["SASRec"][0], 2),
                                     "cpu": round(tot["FamouSRec"][1] / tot["SASRec"][1], 2)}
        fam.force_expert = None

    n_train_batches = len(train_data)
    med = {name: [statistics.median(x[i] for x in v) for i in (0, 1)] for name, v in step_s.items() if v}

    def per_clock(fn):
        return {clock: fn(i) for i, clock in enumerate(("wall", "cpu"))}

    result = {
        "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} cores, shared), torch threads "
                   f"{torch.get_num_threads()}, device {device}, load average {os.getloadavg()[0]:.1f}",
        "dataset": args.dataset, "train_batch_size": args.train_batch_size, "batches_timed": args.batches,
        "train_batches_per_epoch": n_train_batches, "n_items": int(sas.n_items),
        "step_ms_median": per_clock(lambda i: {k: round(v[i] * 1e3, 1) for k, v in med.items()}),
        "epoch_s_estimate": per_clock(lambda i: {k: round(v[i] * n_train_batches, 1) for k, v in med.items()}),
        "epoch_ratio_vs_sasrec": per_clock(lambda i: {k: round(v[i] / med["SASRec"][i], 2) for k, v in med.items()}),
        "spe_pairs_term_ms (step - step with lambda_spe=0)":
            per_clock(lambda i: round((med["FamouSRec"][i] - med["FamouSRec lambda_spe=0"][i]) * 1e3, 1))
            if "FamouSRec lambda_spe=0" in med else None,
        "spe_loss_alone_fwd_bwd_ms_median": per_clock(lambda i: round(statistics.median(x[i] for x in spe_s) * 1e3, 1))
            if spe_s else None,
        "eval_users": users,
        "inference_ms_per_user": per_clock(lambda i: {k: round(v[i] / max(users, 1) * 1e3, 4) for k, v in eval_s.items()}),
        "inference_ratio_vs_sasrec": per_clock(lambda i: {k: round(v[i] / eval_s["SASRec"][i], 2)
                                                          for k, v in eval_s.items()}),
        "inference_ratio_vs_sasrec_all_users_forced_to_one_expert": forced,
        "famousrec_expert_usage_share_at_inference (untrained)": usage,
        "famousrec_experts": fam.kinds, "famousrec_n_layers": fam.n_layers,
        "sasrec_n_layers": sas.n_layers,
    }
    if "FamouSRec mamba->mlp" in med:
        result["mamba_share_of_step (1 - step(mamba->mlp)/step)"] = per_clock(
            lambda i: round(1 - med["FamouSRec mamba->mlp"][i] / med["FamouSRec"][i], 2))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
