"""Early stopping replayed on a validation curve (recbole_famous.bench.patience) against RecBole's own rule."""
import pytest
from recbole.utils import early_stopping

from recbole_famous.bench.patience import remaining, replay, shorter_patience

CURVE = {0: 0.05, 1: 0.06, 2: 0.058, 3: 0.059, 4: 0.06, 5: 0.055, 6: 0.054, 7: 0.053, 8: 0.07, 9: 0.069, 10: 0.068}


def recbole_stop(scores, patience):
    """RecBole's trainer loop: the epoch it stops after and the best epoch (every epoch validated)."""
    best, step, best_epoch = -float("inf"), 0, None
    for epoch in sorted(scores):
        best, step, stop, update = early_stopping(scores[epoch], best, step, max_step=patience, bigger=True)
        if update:
            best_epoch = epoch
        if stop:
            return epoch, best_epoch
    return None, best_epoch


@pytest.mark.parametrize("patience", [0, 1, 2, 3, 4, 5])
def test_replay_matches_recboles_early_stopping(patience):
    stop, best_epoch = recbole_stop(CURVE, patience)
    r = replay(CURVE, patience)
    assert r["stopped"] == (stop is not None) and r["best_epoch"] == best_epoch
    if stop is not None:
        assert r["stop_epoch"] == stop


def test_a_tie_resets_the_count_and_a_shorter_patience_misses_the_late_gain():
    r = replay(CURVE, 2)  # 0.06 at epoch 4 ties epoch 1: kept, count reset; stops after 5, 6, 7
    assert r == {"stopped": True, "stop_epoch": 7, "best_epoch": 4, "best_score": 0.06}
    rows = {row["patience"]: row for row in shorter_patience(CURVE, 3, candidates=(1, 2, 7))}
    assert sorted(rows) == [1, 2, 3]  # 7 > the trained patience: not replayable
    assert rows[3]["best_epoch"] == 8 and not rows[3]["stopped"] and rows[3]["score_ratio"] == 1.0
    assert rows[2]["score_ratio"] == pytest.approx(0.06 / 0.07) and rows[2]["epochs_saved"] is None
    with pytest.raises(ValueError):
        replay(CURVE, -1)


@pytest.mark.parametrize("patience", [0, 1, 3, 10])
@pytest.mark.parametrize("seen", [1, 3, 6, 9])
def test_epochs_to_go_match_recboles_rule_run_on(patience, seen):
    """A run still going after ``seen`` epochs: as few epochs as RecBole trains on if none of them gains (its
    stop found by running RecBole's rule on), never past the cap; as many as the cap leaves."""
    part = {e: CURVE[e] for e in range(seen)}
    if replay(part, patience)["stopped"]:
        assert remaining(part, patience, 200) == {"at_least": 0, "at_most": 0}
        return
    for cap in (200, seen + 2):
        flat = {**part, **{e: -1.0 for e in range(seen, cap)}}  # no later epoch beats the best
        stop, _ = recbole_stop(flat, patience)
        trained = (stop if stop is not None else cap - 1) + 1
        assert remaining(part, patience, cap) == {"at_least": trained - seen, "at_most": cap - seen}
    assert remaining(part, patience, seen) == {"at_least": 0, "at_most": 0}  # at its cap: done
    assert remaining({}, patience, 200) == {"at_least": patience + 1, "at_most": 200}  # nothing validated yet
