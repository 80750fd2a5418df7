"""Efficiency columns of the benchmark table, measured on a trained model.

* ``params_total``: trainable parameters.
* ``params_active``: parameters that serve one user at inference, averaged over users. For a dense
  model this is ``params_total``. For a mixture (FamouSRec, Eqs. 7-9 with ``eval_top_k`` = k < K) the
  experts a user is not dispatched to do not run: active = everything outside the experts + for each
  MoE layer the mean over users of the parameters of the experts that served them (from the share of
  users each expert served in the timed pass; ``force_expert`` = that expert only). The item embedding
  table counts as active (full ranking scores every item).
* ``infer_ms_per_1k_users``: wall-clock milliseconds of full ranking for 1,000 test users: the model's
  ``full_sort_predict``, masking the user's history and the top-10 cut, as RecBole's evaluator does,
  without the metric computation; one warm-up batch untimed.
* Peak memory is measured by ``worker.py`` (max RSS of the run's own process).
"""

from __future__ import annotations

import time

import torch

from recbole_famous import pipeline


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def moe_layers(model) -> list:
    """The MoE layers of a mixture model: modules holding an ``experts`` ModuleList (FamouSRec's ``MoELayer``)."""
    layers = getattr(model, "layers", None)
    if layers is None:
        return []
    return [layer for layer in layers if isinstance(getattr(layer, "experts", None), torch.nn.ModuleList)]


def active_params(model, usage_share=None) -> float:
    """Mean parameters active per user at inference (see the module docstring).

    ``usage_share``: per MoE layer, a list of the share of users served by each expert (top-1); if omitted,
    it is read from the model's ``expert_usage_share()`` when it has one, else every expert counts.
    """
    total = count_params(model)
    layers = moe_layers(model)
    if not layers:
        return float(total)
    top_k = int(getattr(model, "eval_top_k", 1) or 1)
    force = getattr(model, "force_expert", None)
    use_router = bool(getattr(model, "use_router", True))
    if usage_share is None and hasattr(model, "expert_usage_share"):
        usage_share = [list(d.values()) for d in model.expert_usage_share()]
    active = float(total)
    for index, layer in enumerate(layers):
        sizes = [count_params(e) for e in layer.experts]
        k = len(sizes)
        active -= sum(sizes)
        if force is not None:
            active += sizes[force]
        elif not use_router or top_k >= k:
            active += sum(sizes)
        elif usage_share and index < len(usage_share) and sum(usage_share[index]) > 0 and top_k == 1:
            active += sum(s * w for s, w in zip(sizes, usage_share[index]))
        else:  # k > 1 of K without per-user sets: k experts of mean size
            active += top_k * sum(sizes) / k
    return active


@torch.no_grad()
def time_full_ranking(model, eval_data, max_users: int | None = None, topk: int = 10) -> dict:
    """Full-ranking inference time over ``eval_data`` (a RecBole full-sort dataloader).

    Returns ``{"users": n, "seconds": s, "infer_ms_per_1k_users": ms}``; FamouSRec's per-expert usage counters
    are reset first, so ``expert_usage_share()`` afterwards describes exactly the timed users.
    """
    model.eval()
    if hasattr(model, "reset_expert_usage"):
        model.reset_expert_usage()
    device = pipeline.model_device(model)
    batches = iter(eval_data)
    first = next(batches, None)
    if first is None:
        return {"users": 0, "seconds": 0.0, "infer_ms_per_1k_users": None}
    _rank(model, first, device, topk)  # warm-up (not timed)
    if hasattr(model, "reset_expert_usage"):
        model.reset_expert_usage()
    users, seconds = 0, 0.0
    for batch in [first, *batches]:
        start = time.perf_counter()
        n = _rank(model, batch, device, topk)
        seconds += time.perf_counter() - start
        users += n
        if max_users and users >= max_users:
            break
    return {"users": users, "seconds": seconds, "infer_ms_per_1k_users": 1e6 * seconds / max(users, 1)}


def _rank(model, batch, device, topk) -> int:
    interaction, history_index = batch[0], batch[1]
    interaction = interaction.to(device)
    scores = model.full_sort_predict(interaction).view(len(interaction), -1)
    scores[:, 0] = -torch.inf
    if history_index is not None:
        scores[history_index] = -torch.inf
    torch.topk(scores, min(topk, scores.size(1)), dim=-1)
    return len(interaction)
