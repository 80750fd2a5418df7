"""Synthetic behaviour types (issue 12): the generator, and FamouSRec's router separating the types on a small
instance through the plugin's own runner."""
import os

import pytest

from recbole_famous.data import synth


def _read(folder, name):
    rows = {}
    with open(os.path.join(folder, f"{name}.inter"), encoding="utf-8") as f:
        next(f)
        for line in f:
            u, i, t = line.rstrip("\n").split("\t")
            rows.setdefault(u, []).append((float(t), i))
    return {u: [i for _, i in sorted(v)] for u, v in rows.items()}


def test_generator_writes_each_type_with_its_pattern(tmp_path):
    folder = synth.generate("S", str(tmp_path), users_per_type=30, n_topics=4, items_per_topic=5, min_len=6,
                            max_len=12, period=3, noise=0.0, seed=1, echo=lambda *a: None)
    seqs, types = _read(folder, "S"), synth.read_types("S", str(tmp_path))
    assert len(seqs) == len(types) == 90 and sorted(set(types.values())) == ["drift", "periodic", "stable"]
    successor = {}
    for u, seq in seqs.items():
        assert 6 <= len(seq) <= 12
        if types[u] == "periodic":
            assert all(seq[t] == seq[t - 3] for t in range(3, len(seq)))
            assert len(set(seq[:3])) == 3
        elif types[u] == "stable":
            topics = {int(i[1:]) // 5 for i in seq}
            assert len(topics) <= 2
        else:  # one global chain: an item always has the same successor
            for a, b in zip(seq, seq[1:]):
                assert successor.setdefault(a, b) == b
    again = synth.generate("S", str(tmp_path / "again"), users_per_type=30, n_topics=4, items_per_topic=5,
                           min_len=6, max_len=12, period=3, noise=0.0, seed=1, echo=lambda *a: None)
    assert (again / "S.inter").read_text() == (folder / "S.inter").read_text()


def test_generator_repeat_users_and_personal_periods(tmp_path):
    """``repeat``: runs of the user's own length r along the global chain; ``period_max``: each periodic user has
    its own period in [period, period_max], so the next item is the successor of the last item's previous
    occurrence; the default mix and its numbers are unchanged by the new options."""
    kw = dict(users_per_type=40, n_topics=5, items_per_topic=6, min_len=12, max_len=20, noise=0.0, seed=3,
              echo=lambda *a: None)
    folder = synth.generate("R", str(tmp_path), types=["periodic", "repeat", "drift"], period=3, period_max=6,
                            repeat_min=2, repeat_max=4, **kw)
    seqs, types = _read(folder, "R"), synth.read_types("R", str(tmp_path))
    successor, periods, rs = {}, set(), set()
    for u, seq in seqs.items():
        if types[u] == "periodic":
            p = next(p for p in range(1, len(seq)) if all(seq[t] == seq[t - p] for t in range(p, len(seq))))
            assert 3 <= p <= 6 and len(set(seq)) == p
            periods.add(p)
        elif types[u] in ("repeat", "drift"):
            runs = [[seq[0]]]
            for item in seq[1:]:
                if item == runs[-1][-1]:
                    runs[-1].append(item)
                else:
                    runs.append([item])
            for a, b in zip(runs, runs[1:]):  # the same global chain for both types
                assert successor.setdefault(a[0], b[0]) == b[0]
            inner = {len(r) for r in runs[1:-1]}  # the first and last runs may be cut
            if types[u] == "drift":
                assert all(len(r) == 1 for r in runs)
            else:
                assert len(inner) == 1 and 2 <= min(inner) <= 4 and all(len(r) <= min(inner) for r in runs)
                rs |= inner
    assert periods == {3, 4, 5, 6} and rs == {2, 3, 4}
    # repeat_chain "own": repeat users walk a second chain, consistent among them and not the drift users' one
    folder = synth.generate("O", str(tmp_path / "own"), types=["repeat", "drift"], repeat_chain="own", **kw)
    seqs, types = _read(folder, "O"), synth.read_types("O", str(tmp_path / "own"))
    maps = {"repeat": {}, "drift": {}}
    for u, seq in seqs.items():
        steps = [(a, b) for a, b in zip(seq, seq[1:]) if a != b]
        for a, b in steps:
            assert maps[types[u]].setdefault(a, b) == b
    assert any(maps["drift"].get(a) not in (None, b) for a, b in maps["repeat"].items())
    # the defaults still give the same data (Synth3 stays reproducible): period_max None = period for everyone
    a = synth.generate("D", str(tmp_path / "a"), period=2, **kw)
    b = synth.generate("D", str(tmp_path / "b"), period=2, period_max=2, repeat_min=3, repeat_max=5, **kw)
    assert (a / "D.inter").read_text() == (b / "D.inter").read_text()


def test_generator_periodic_types_with_their_own_period_ranges(tmp_path):
    """``periodicP-Q`` types: each its own period range, under its own name, beside the global ``period``."""
    folder = synth.generate("P", str(tmp_path), types=["periodic2-3", "periodic5-7", "periodic4", "periodic"],
                            period=6, users_per_type=40, n_topics=5, items_per_topic=6, min_len=14, max_len=20,
                            noise=0.0, seed=5, echo=lambda *a: None)
    seqs, types = _read(folder, "P"), synth.read_types("P", str(tmp_path))
    periods = {}
    for u, seq in seqs.items():
        p = next(p for p in range(1, len(seq)) if all(seq[t] == seq[t - p] for t in range(p, len(seq))))
        assert len(set(seq)) == p
        periods.setdefault(types[u], set()).add(p)
    assert periods == {"periodic2-3": {2, 3}, "periodic5-7": {5, 6, 7}, "periodic4": {4}, "periodic": {6}}
    assert synth.periodic_range("periodic5-7") == (5, 7) and synth.periodic_range("periodic") is None


@pytest.mark.parametrize("kwargs, message", [
    ({"types": ["weekly"]}, "unknown behaviour type"),
    ({"types": ["periodic7-5"]}, "1 <= P <= Q"),
    ({"types": ["periodic2-99"], "n_topics": 2, "items_per_topic": 5}, "exceeds"),
    ({"min_len": 3}, "min_len"),
    ({"noise": 1.0}, "noise"),
    ({"period": 3, "period_max": 2}, "period_max"),
    ({"repeat_min": 3, "repeat_max": 2}, "repeat_min"),
    ({"repeat_chain": "mine"}, "repeat_chain"),
])
def test_generator_rejects_bad_input(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synth.generate("S", str(tmp_path), echo=lambda *a: None, **kwargs)


def test_cli_bad_type_is_one_line_and_exit_2(tmp_path, capsys):
    from recbole_famous.cli import main

    assert main(["data", "synth", "S", "--out", str(tmp_path), "--types", "weekly"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown behaviour type" in err[0]
    assert not (tmp_path / "S").exists()


def test_cli_passes_the_new_options(tmp_path):
    from recbole_famous.cli import main

    assert main(["data", "synth", "S", "--out", str(tmp_path), "--types", "periodic,repeat", "--users-per-type", "20",
                 "--period", "3", "--period-max", "5", "--repeat-min", "3", "--repeat-max", "3",
                 "--repeat-chain", "own", "--noise", "0"]) == 0
    kinds = synth.read_types("S", str(tmp_path))
    for u, seq in _read(tmp_path / "S", "S").items():
        if kinds[u] == "periodic":
            assert 3 <= len(set(seq)) <= 5
        else:  # r = 3 for everyone: every run but the first and the last has length 3
            bounds = [0] + [t for t in range(1, len(seq)) if seq[t] != seq[t - 1]] + [len(seq)]
            assert {b - a for a, b in zip(bounds[1:-2], bounds[2:-1])} == {3}
    assert main(["data", "synth", "T", "--out", str(tmp_path), "--period", "4", "--period-max", "3"]) == 2


# The small instance of docs/results/synth/README.md: alternating and chain-walking users, three small experts,
# the routing options (band-energy gate, switch routing and balance, band-initialised filters).
SMALL = {"MAX_ITEM_LIST_LENGTH": 16, "hidden_size": 16, "inner_size": 32, "hidden_dropout_prob": 0.2,
         "attn_dropout_prob": 0.2, "learning_rate": 0.005, "epochs": 6, "stopping_step": 6, "train_batch_size": 64,
         "experts": ["attention", "gru", "mlp"], "spe_mode": "sampled", "gamma_balance": 1.0, "mu_align": 0.0,
         "gate_input": "band_energy", "train_routing": "switch", "balance_loss": "switch", "filter_init": "bands",
         "show_progress": False, "seed": 2020}


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    """FamouSRec trained on the small instance through the plugin's runner, reloaded through the checks (~10 s)."""
    from recbole_famous import pipeline
    from recbole_famous.runner import run

    tmp_path = tmp_path_factory.mktemp("tiny")
    data_dir = str(tmp_path / "data")
    synth.generate("Tiny", data_dir, users_per_type=150, n_topics=12, items_per_topic=3, min_len=8, max_len=16,
                   period=2, types=["periodic", "drift"], echo=lambda *a: None)
    overrides = {**SMALL, "data_path": data_dir, "checkpoint_dir": str(tmp_path / "saved"),
                 "results_dir": str(tmp_path / "results")}
    result = run("FamouSRec", "Tiny", overrides=overrides)
    trained = pipeline.load_trained(result["checkpoint"])  # the run's model and data, through the checks
    return trained, synth.read_types("Tiny", data_dir)


def test_router_separates_behaviour_types_on_a_small_instance(tiny_trained):
    """Each type is served mostly by one expert (>= 55% of its users; three experts, so chance is 33%), the two types
    by different experts, and forcing a type's users onto the other type's expert lowers their NDCG@10 (validation
    split). The share depends on the CPU's float rounding: seed 2020 routes 0.99 of the periodic, 0.59 of the drift users
    on an AMD EPYC (torch 2.13 cpu), above 0.7 on the Intel machine this test was written on; seeds 2021 / 2022 give
    0.64 / above 0.7 on the EPYC. Hence 0.55, not 0.7."""
    from recbole_famous.bench.synth import separation, type_report

    trained, types = tiny_trained
    model, valid_data = trained.model.eval(), trained.valid_data
    report = type_report(model, valid_data, types)
    sep = separation(report)
    assert sep["min_share"] >= 0.55, sep
    assert sep["distinct"], sep
    for name, (label, _) in sep["top"].items():
        row = report["types"][name]
        other = next(lab for t, (lab, _) in sep["top"].items() if t != name)
        assert row["forced"][other] < row["forced"][label] - 0.05, (name, row["forced"])


def test_headroom_finds_the_per_user_preference_where_routing_pays(tiny_trained):
    """Where the router routes, the expert that serves a user best on their previous item also tends to serve
    them best on the validation item (above chance), and routing by it beats every forced expert: the diagnostic
    that reads about chance on Instruments (docs/results/routing/README.md) can tell the two cases apart."""
    from recbole_famous.bench import headroom

    trained, _ = tiny_trained
    res = headroom.measure(trained.model.eval(), trained.valid_data, probes=2, echo=lambda m: None)
    assert res["users"] == 300 and res["strict_pairs"] >= 30, res
    assert res["agreement"] > res["chance"] + 0.1, res
    assert res["probe_routed"] > max(res["forced"].values()) + 0.01, res
    assert res["oracle"] >= res["probe_routed"] and res["routed"] > max(res["forced"].values()), res


def test_synth_table_keeps_runs_under_other_settings_apart():
    """The study's table (``bench/synth.py``, once benchmarks/synth_routing.py's): a probe run of a variant under
    another ``--set`` value is its own row, not averaged into the variant's seeds."""
    from recbole_famous.bench.synth import markdown

    def run(variant, seed, ndcg, **extra):
        types = {"all": {"ndcg": ndcg, "share": {}, "forced": {}}, "a": {"ndcg": ndcg, "share": {}, "forced": {}}}
        return {"variant": variant, "seed": seed, "extra": {"epochs": 40, **extra}, "epochs_run": 40,
                "epoch_seconds": [1.0], "valid": {"types": types}}

    runs = {"1": run("routing", 1, 0.6), "2": run("routing", 2, 0.7), "3": run("routing", 1, 0.1, gamma_balance=5)}
    table = markdown(runs, "D")
    assert "| routing | 2 | 0.6500 ± 0.0707 |" in table
    assert "| routing (gamma_balance=5) | 1 | 0.1000 |" in table


def test_synth_study_runs_through_bench_and_joins_the_committed_rows(tmp_path):
    """A tiny synthetic study: ``bench run`` trains the base run and one variant on a generated dataset, ``bench
    synth`` probes each checkpoint per behaviour type and merges the rows into those already in the study's JSON
    (an earlier script's row stays, under its key), and the tables show both."""
    import json

    from bench_helpers import bench_cli, run_in_process
    from recbole_famous.bench import plan, runs
    from recbole_famous.bench import synth as study

    data = tmp_path / "data"
    synth.generate("Tiny", str(data), users_per_type=20, n_topics=3, items_per_topic=4, min_len=6, max_len=10,
                   period=2, noise=0.0, seed=2, types=["periodic", "drift"], echo=lambda *a: None)
    body = {"models": ["FamouSRec"], "datasets": ["Tiny"], "seeds": [7],
            "config": {"data_path": str(data), "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "hidden_size": 8,
                       "inner_size": 16, "d_state": 4, "train_batch_size": 64, "spe_mode": "sampled",
                       "state": "WARNING"},
            "variants": {"one": {"model": "FamouSRec", "group": "synth", "set": {"experts": ["gru"],
                                                                                 "use_router": False}}}}
    (tmp_path / "s.yaml").write_text(json.dumps(body))
    profile = plan.load_profile(str(tmp_path / "s.yaml"))
    out, docs = str(tmp_path / "out"), tmp_path / "docs"
    specs = plan.plan(profile) + plan.plan(profile, variants=["one"])
    assert runs.run_all(specs, out, launcher=run_in_process, echo=lambda m: None)["ran"] == 2
    old = {"variant": "routing", "seed": 1, "dataset": "Tiny", "extra": {"epochs": 40}, "epochs_run": 40,
           "epoch_seconds": [2.0], "valid": {"types": {"all": {"ndcg": 0.5, "share": {}, "forced": {}}}},
           "test": {"types": {"all": {"ndcg": 0.4, "share": {}, "forced": {}}}}}
    (docs / "s" / "Tiny").mkdir(parents=True)
    (docs / "s" / "Tiny" / "synth_routing.json").write_text(json.dumps({"Tiny|routing|1|epochs=40": old}))
    assert bench_cli(["synth", "--profile", str(tmp_path / "s.yaml"), "--out", out, "--docs", str(docs)]) == 0
    rows = json.loads((docs / "s" / "Tiny" / "synth_routing.json").read_text())
    assert sorted(rows) == ["Tiny|one|7|", "Tiny|paper|7|", "Tiny|routing|1|epochs=40"]
    new = rows["Tiny|paper|7|"]
    assert set(new["valid"]["types"]) == {"all", "periodic", "drift"} and new["valid"]["types"]["periodic"]["share"]
    assert abs(new["valid"]["types"]["all"]["ndcg"] - new["valid_ndcg10"]) < 1e-3  # the probe agrees with RecBole
    assert set(new["separation"]["top"]) == {"periodic", "drift"} and rows["Tiny|one|7|"]["overrides"] == {
        "experts": ["gru"], "use_router": False}
    table = (docs / "s" / "Tiny" / "synth_routing.md").read_text()
    assert "| paper | 1 |" in table and "| one | 1 |" in table and "| routing (epochs=40) | 1 | 0.5000 |" in table
    assert os.path.isfile(study.cache_path(runs.record_path(out, specs[0])))
    # bench by-period on the base run's checkpoint: periodic users grouped by the period read back (2 here)
    checkpoint = runs.load_record(runs.record_path(out, specs[0]))["result"]["checkpoint"]
    assert bench_cli(["by-period", checkpoint, "--out", str(tmp_path / "p" / "by_period.md")]) == 0
    groups = json.loads((tmp_path / "p" / "by_period.json").read_text())
    assert set(groups) == {"periodic p=2", "drift"} and sum(g["users"] for g in groups.values()) == 40
    assert all(abs(sum(g["share"].values()) - 1) < 1e-9 for g in groups.values())


def test_the_earlier_scripts_committed_rows_give_the_committed_tables():
    """Every docs/results/synth/**/synth_routing.json (rows of benchmarks/synth_routing.py, now the profile
    props/bench/synth.yaml) still reads, and the study's ``markdown`` gives its committed tables byte for byte."""
    import glob
    import json

    from recbole_famous.bench.synth import markdown

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results", "synth")
    paths = sorted(glob.glob(os.path.join(root, "**", "synth_routing.json"), recursive=True))
    assert len(paths) >= 8
    for path in paths:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        text = ""
        for name in sorted({r["dataset"] for r in rows.values()}):
            mine = {k: r for k, r in rows.items() if r["dataset"] == name}
            text += markdown(mine, name, "valid") + "\n" + markdown(mine, name, "test")
        with open(path[: -len(".json")] + ".md", encoding="utf-8") as f:
            assert text == f.read(), path
