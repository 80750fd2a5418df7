"""Serving from a checkpoint: top-N in original ids, the expert that served each user, bad inputs, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import run_recbole_famous as cli
from recbole_famous.cli import main as cli_main
from recbole_famous import checkpoint, serving
from recbole_famous.config import plugin_model_names
from recbole_famous.errors import UsageError
from recbole_famous.runner import run
from reliability_common import quick, one_thread  # noqa: F401 (autouse fixture)

needs_famousrec = pytest.mark.skipif("FamouSRec" not in plugin_model_names(), reason="FamouSRec not registered")


@pytest.fixture(scope="module")
def famousrec(ml100k_slice, tmp_path_factory):
    result = run("FamouSRec", "mlslice", overrides=quick(ml100k_slice, tmp_path_factory.mktemp("famous")))
    return serving.Recommender(result["checkpoint"])


@pytest.fixture(scope="module")
def sasrec_checkpoint(ml100k_slice, tmp_path_factory):
    overrides = {**quick(ml100k_slice, tmp_path_factory.mktemp("sasrec")), "n_layers": 1}
    return run("SASRec", "mlslice", overrides=overrides)["checkpoint"]


def _histories(rec, n_users=6):
    vocab = rec.tokens[1:]
    return {f"u{u}": [vocab[(7 * u + 3 * i) % len(vocab)] for i in range(2 + u)] for u in range(n_users)}


@needs_famousrec
def test_top_n_in_original_ids_with_the_expert_that_served(famousrec):
    histories = _histories(famousrec)
    answers = serving.recommend(famousrec, histories, top_n=5)
    assert [a["user"] for a in answers] == list(histories)
    for answer in answers:
        assert len(answer["items"]) == 5 and set(answer["items"]) <= set(famousrec.tokens[1:])
        assert not set(answer["items"]) & set(histories[answer["user"]])  # seen items are not recommended again
        assert answer["scores"] == sorted(answer["scores"], reverse=True)
        assert famousrec.model.kinds[answer["expert_index"]] == answer["expert"]
        assert answer["history_used"] == len(histories[answer["user"]]) and answer["fallback"] is None
    assert serving.recommend(famousrec, histories, top_n=5) == answers  # deterministic


@needs_famousrec
def test_the_reported_expert_is_the_one_whose_scores_were_served(famousrec):
    histories = _histories(famousrec, n_users=8)
    routed = serving.recommend(famousrec, histories, top_n=5)
    for index, kind in enumerate(famousrec.model.kinds):
        forced = serving.Recommender(famousrec.checkpoint, overrides={"force_expert": index})
        by_force = {a["user"]: a for a in forced.recommend(histories, top_n=5)}
        assert all(a["expert_index"] == index for a in by_force.values())
        for answer in routed:
            if answer["expert_index"] == index:  # eval_top_k 1: the routed user's scores are that expert's
                assert by_force[answer["user"]]["items"] == answer["items"]
                assert by_force[answer["user"]]["scores"] == pytest.approx(answer["scores"], abs=1e-5)


@needs_famousrec
def test_unknown_empty_too_long_and_malformed_histories_are_reported(famousrec):
    vocab = famousrec.tokens[1:]
    long_history = [vocab[i % len(vocab)] for i in range(famousrec.max_len + 7)]
    answers = {a["user"]: a for a in famousrec.recommend({
        "unknown": ["no-such-item", vocab[0], "[PAD]", 10 ** 9],
        "all_unknown": ["no-such-item"],
        "empty": [],
        "long": long_history,
        "malformed": "not a list",
        "numbers": [int(vocab[1]), int(vocab[2])],  # ml-100k ids given as numbers are read as their text
    }, top_n=4)}
    assert answers["unknown"]["unknown_items"] == ["no-such-item", "[PAD]", 10 ** 9]
    assert answers["unknown"]["history_used"] == 1 and len(answers["unknown"]["items"]) == 4
    for user in ("all_unknown", "empty"):
        answer = answers[user]
        assert answer["fallback"] == "popularity" and answer["expert"] is None and len(answer["items"]) == 4
        counts = [famousrec.tokens.index(t) for t in answer["items"]]
        meta_counts = checkpoint.meta(checkpoint.load(famousrec.checkpoint))["data"]["item_counts"]
        assert [meta_counts[i] for i in counts] == sorted((meta_counts[i] for i in counts), reverse=True)
        assert meta_counts[counts[0]] == max(meta_counts[1:])
    assert answers["long"]["truncated"] == 7 and answers["long"]["history_used"] == famousrec.max_len
    assert answers["long"]["expert"] is not None
    assert answers["malformed"]["error"].startswith("history must be a list") and answers["malformed"]["items"] == []
    assert answers["numbers"]["history_used"] == 2 and not answers["numbers"]["unknown_items"]
    everything = famousrec.recommend([[vocab[0]]], top_n=10 ** 6)[0]
    assert len(everything["items"]) == len(vocab) - 1  # all items but the one seen
    for bad in (0, -3, 2.5, "5"):
        with pytest.raises(UsageError, match="top_n"):
            famousrec.recommend([[vocab[0]]], top_n=bad)
    with pytest.raises(UsageError, match="histories must be"):
        famousrec.recommend("242 302", top_n=3)
    summary = serving.summary(list(answers.values()))
    assert "unknown item id(s) dropped" in summary and "cut to the most recent" in summary
    assert "2 empty history(ies)" in summary and "1 malformed" in summary


def test_other_models_have_no_expert_and_the_cli(sasrec_checkpoint, capsys, tmp_path):
    rec = serving.Recommender(sasrec_checkpoint)
    vocab = rec.tokens[1:]
    (answer,) = rec.recommend({"x": vocab[:3]}, top_n=3)
    assert answer["expert"] is None and answer["expert_index"] is None and len(answer["items"]) == 3

    assert cli_main(["recommend", f"--checkpoint={sasrec_checkpoint}", f"--history={vocab[0]} {vocab[1]} nope"]) == 0
    captured = capsys.readouterr()
    (out,) = json.loads(captured.out)
    assert out["unknown_items"] == ["nope"] and len(out["items"]) == 10
    assert "1 unknown item id(s) dropped" in captured.err

    histories = tmp_path / "h.json"
    histories.write_text(json.dumps([[vocab[0]], []]))
    assert cli.main(["recommend", f"--checkpoint={sasrec_checkpoint}", f"--histories={histories}", "--top_n=2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [len(a["items"]) for a in out] == [2, 2] and out[1]["fallback"] == "popularity"

    for args, message in [
        ([f"--checkpoint={tmp_path / 'none.pth'}", "--history=1"], "checkpoint not found"),
        ([f"--checkpoint={sasrec_checkpoint}", f"--histories={tmp_path / 'none.json'}"], "histories file not found"),
        ([f"--checkpoint={sasrec_checkpoint}"], "give --histories"),
    ]:
        assert cli.main(["recommend", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli_main(["recommend", f"--checkpoint={sasrec_checkpoint}", f"--histories={tmp_path / 'bad.json'}"]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_serving_needs_no_dataset_files(sasrec_checkpoint, tmp_path):
    # the checkpoint holds the vocabulary: point data_path at an empty folder and serve anyway
    rec = serving.Recommender(sasrec_checkpoint, overrides={"data_path": str(tmp_path)})
    assert len(rec.recommend([[rec.tokens[5]]], top_n=3)[0]["items"]) == 3
    assert isinstance(rec.model.item_embedding.weight, torch.Tensor)
