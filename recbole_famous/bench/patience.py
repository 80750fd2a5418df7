"""What a shorter early-stopping patience would have given, read off measured validation curves (issue 13).

A run trained with patience ``P0`` holds every validated epoch up to its stop, so RecBole's rule
(``recbole.utils.early_stopping``: an epoch whose score is ``>=`` the best so far resets the count, the run
stops once more than ``P`` epochs in a row did not) can be replayed on its curve for any ``P <= P0``: the epoch
at which patience ``P`` stops, the best epoch it keeps (the one tested), and that epoch's score against the one
the full patience kept. On a run still going, a replay that has not stopped by the last validated epoch says so.
"""
from __future__ import annotations


def replay(scores: dict, patience: int) -> dict:
    """Replay early stopping with ``patience`` on ``{epoch: validation score}`` (one validation per epoch).

    ``{"stopped": bool, "stop_epoch": last epoch trained, "best_epoch", "best_score"}``."""
    if patience < 0:
        raise ValueError(f"patience must be >= 0, got {patience}")
    best_epoch, best, waited, last = None, float("-inf"), 0, None
    for epoch in sorted(scores):
        value, last = float(scores[epoch]), epoch
        if value >= best:
            best, best_epoch, waited = value, epoch, 0
        else:
            waited += 1
            if waited > patience:
                return {"stopped": True, "stop_epoch": epoch, "best_epoch": best_epoch, "best_score": best}
    return {"stopped": False, "stop_epoch": last, "best_epoch": best_epoch, "best_score": best}


def remaining(scores: dict, patience: int, max_epochs: int) -> dict:
    """For a run still going, with ``scores`` its validated epochs so far: ``{"at_least", "at_most"}`` more
    epochs. At the least, none of them beats the best and the patience runs out (RecBole stops at the epoch whose
    wait exceeds ``patience``); at the most, the run trains to its epoch cap (``epochs``: epochs 0 .. max - 1).
    Both 0 for a curve that has stopped already."""
    if not scores:
        return {"at_least": max(0, min(patience + 1, max_epochs)), "at_most": max(0, max_epochs)}
    r = replay(scores, patience)
    done = r["stop_epoch"] + 1
    if r["stopped"] or done >= max_epochs:
        return {"at_least": 0, "at_most": 0}
    waited = r["stop_epoch"] - r["best_epoch"]
    return {"at_least": min(patience + 1 - waited, max_epochs - done), "at_most": max_epochs - done}


def shorter_patience(scores: dict, trained_patience: int, candidates=(3, 5, 7)) -> list:
    """One row per patience ``P`` in ``candidates`` (those ``<= trained_patience``) and the trained one: where it
    stops, what it keeps, the kept score as a fraction of the trained patience's, and the epochs it saves."""
    full = replay(scores, trained_patience)
    rows = []
    for p in sorted({int(c) for c in candidates if int(c) <= trained_patience} | {int(trained_patience)}):
        r = replay(scores, p)
        rows.append({**r, "patience": p,
                     "score_ratio": r["best_score"] / full["best_score"] if full["best_score"] > 0 else float("nan"),
                     "epochs_saved": (full["stop_epoch"] - r["stop_epoch"]) if r["stopped"] and full["stopped"] else None})
    return rows


def markdown(ds: str, cur: dict, trained_patience: int, candidates=(3, 5, 7)) -> list:
    """A section on the finished runs of ``cur`` (``{model: {seed: curve}}``, ``compare.curves``): per run and
    shorter patience, the stop epoch, the kept best epoch and its validation score relative to the trained one."""
    rows = []
    for model, by_seed in cur.items():
        for seed, c in by_seed.items():
            if c.get("source") != "finished" or not c.get("scores"):
                continue
            for r in shorter_patience(c["scores"], trained_patience, candidates):
                rows.append(f"| {model} | {seed} | {r['patience']} | {r['stop_epoch'] + 1} | {r['best_epoch']} | "
                            f"{r['best_score']:.4f} | {100 * (r['score_ratio'] - 1):+.1f}% |")
    head = [f"### {ds}: would a shorter patience do?", "",
            f"Early stopping replayed on each finished run's validation curve (trained with patience "
            f"{trained_patience}; RecBole's rule, `recbole_famous/bench/patience.py`): epochs it would have run, the "
            "best epoch it keeps (0-based, the one tested) and that epoch's validation NDCG@10 against the trained "
            "patience's.", ""]
    if not rows:
        return head + ["No finished run yet.", ""]
    return head + ["| model | seed | patience | epochs run | best epoch | valid NDCG@10 | vs trained |",
                   "|---|---:|---:|---:|---:|---:|---:|", *rows, ""]
