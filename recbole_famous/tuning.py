"""Hyper-parameter search in RecBole's conventions: a params file, ``recbole.trainer.HyperTuning`` and hyperopt.

The command line, the params file's format and the output folder: ``recbole_famous/cli/tune.py``
(``run_recbole_famous.py tune --help``).

Each trial is one run of the plugin's own pipeline (``recbole_famous.runner.run``) with the trial's values on top
of the run's config (``--config_files``, ``--key=value``; the budget, ``epochs`` / ``stopping_step``, comes from
there), made as the benchmark makes its runs: a record of the one run store, run by its executor (``bench/runs.py``,
``bench/worker.py``), so a search's trials and a benchmark's runs have one schema and one place. The best epoch and
the trial are chosen on the validation split (``valid_metric``); the test split is evaluated and reported, never
used for the choice. With ``--no_default`` absent, the config's own values of the
searched parameters run first as the ``default`` trial (outside hyperopt's sampling), so that the table compares
the tuned setting with the default at the same budget."""

from __future__ import annotations

import ast
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass

from recbole.trainer import HyperTuning

from recbole_famous.errors import UsageError
from recbole_famous.files import write_text

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "quniform")
INSTALL_HINT = 'pip install -e ".[tune]"'


@dataclass(frozen=True)
class Param:
    """One line of a params file: ``name``, ``kind`` (a distribution), its ``args`` and the ``line`` it came from."""

    name: str
    kind: str
    args: tuple
    line: int

    def value(self, raw):
        """The value hyperopt drew, as the config gets it (quniform on integer bounds and step: an int)."""
        if self.kind in ("uniform", "loguniform"):
            return float(raw)
        if self.kind == "quniform":
            if all(float(a).is_integer() for a in self.args):
                return int(round(float(raw)))
            return float(raw)
        return raw


def _numbers(path, n, name, kind, text, count):
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != count:
        raise UsageError(f"{path}:{n}: {name} {kind} takes {count} comma-separated numbers, got '{text}'")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{path}:{n}: {name} {kind} takes numbers, got '{text}'") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{path}:{n}: {name} {kind} takes finite numbers, got '{text}'")
    if values[0] >= values[1]:
        raise UsageError(f"{path}:{n}: {name} {kind} needs low < high, got '{text}'")
    if count == 3 and values[2] <= 0:
        raise UsageError(f"{path}:{n}: {name} {kind} needs a step q > 0, got '{text}'")
    return values


def parse_params_file(path: str) -> list[Param]:
    """The search space of a params file; a ``UsageError`` naming the file and line for any bad line."""
    if not os.path.isfile(path):
        raise UsageError(f"params file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    params, seen = [], {}
    for n, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 2)
        if len(parts) < 3:
            raise UsageError(f"{path}:{n}: malformed line '{text}': expected 'name distribution values' "
                             f"(distributions: {', '.join(DISTRIBUTIONS)})")
        name, kind, rest = parts
        if kind not in DISTRIBUTIONS:
            raise UsageError(f"{path}:{n}: unknown distribution '{kind}' for {name}; known: {', '.join(DISTRIBUTIONS)}")
        if name in seen:
            raise UsageError(f"{path}:{n}: {name} is already given on line {seen[name]}")
        if kind == "choice":
            try:
                values = _literal(rest)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise UsageError(f"{path}:{n}: {name} choice takes a list literal like [1, 2] or ['a', 'b'], "
                                 f"got '{rest.strip()}'") from None
            if not isinstance(values, (list, tuple)) or not values:
                raise UsageError(f"{path}:{n}: {name} choice takes a non-empty list, got '{rest.strip()}'")
            args = tuple(values)
        else:
            args = _numbers(path, n, name, kind, rest.split("#", 1)[0].replace(" ", ""), 3 if kind == "quniform" else 2)
        seen[name] = n
        params.append(Param(name, kind, args, n))
    if not params:
        raise UsageError(f"{path}:{len(lines) or 1}: empty search space: no 'name distribution values' line")
    return params


def _literal(text: str):
    """A choice list: the whole rest of the line, or (when that does not parse) the part before a ``#`` comment."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        if "#" not in text:
            raise
        return ast.literal_eval(text.split("#", 1)[0].strip())


def check_names(params: list[Param], config, path: str) -> None:
    """Every searched name must be a config key of the run (RecBole's, the protocol's, the model's, the dataset's)."""
    known = config.final_config_dict
    for p in params:
        if p.name not in known:
            raise UsageError(f"{path}:{p.line}: unknown parameter '{p.name}': not a config key of "
                             f"{config['model']} on {config['dataset']}")


def space_dict(params: list[Param]) -> dict:
    """The space in ``HyperTuning(params_dict=...)``'s layout: ``{distribution: {name: args}}``."""
    space: dict = {}
    for p in params:
        space.setdefault(p.kind, {})[p.name] = list(p.args)
    return space


def require_hyperopt() -> None:
    try:
        import hyperopt  # noqa: F401
    except ImportError:
        raise UsageError(f"tune needs hyperopt, an optional dependency: {INSTALL_HINT}") from None


class TrialFailed(Exception):
    """A trial that stopped on a non-finite loss (recorded, reported to hyperopt as failed)."""


class Tuner(HyperTuning):
    """RecBole's HyperTuning, with a seeded, resumable ``fmin`` (its own ``run`` takes neither a seed nor trials)
    and its exhaustive search on hyperopt >= 0.2.7 (``compat`` fix 10)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("algo") == "exhaustive":
            from functools import partial

            from recbole_famous import compat

            self.algo = partial(compat.exhaustive_search, nbMaxSucessiveFailures=1000)

    def trial(self, params):
        import hyperopt

        try:
            return super().trial(params)
        except TrialFailed:
            return {"status": hyperopt.STATUS_FAIL, "loss": float("inf")}  # early_stop_fn reads a loss

    def search(self, seed: int) -> None:
        import numpy as np
        from hyperopt import Trials, fmin

        from hyperopt.exceptions import AllTrialsFailed

        try:
            fmin(self.trial, self.space, algo=self.algo, max_evals=self.max_evals, trials=Trials(),
                 rstate=np.random.default_rng(seed), early_stop_fn=self.early_stop_fn, verbose=False,
                 show_progressbar=False, return_argmin=False)
        except AllTrialsFailed:  # every trial diverged: the records say so, the caller reports it
            pass


def _write_atomic(path: str, text: str) -> None:
    write_text(path, text, fsync=True)


def _canon(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def trial_variant(trial: str) -> str:
    """A trial's variant name in the run store: ``default``, or ``trial0001`` for hyperopt's first trial."""
    return trial if trial == "default" else f"trial{trial}"


def trial_row(record: dict, names) -> dict:
    """The search's view of a run-store record of a trial (finished, or a ``.failed.json`` that diverged): ``trial``,
    ``params`` (the searched ``names``), ``status``, the scores, epochs and seconds; the fields of the older
    searches' ``trials/<n>.json``, which read as they are."""
    spec = record["spec"]
    variant = spec["variant"]
    overrides = spec["overrides"]
    row = {"trial": variant[len("trial"):] if variant.startswith("trial") else variant,
           "params": {n: overrides[n] for n in names if n in overrides}}
    if record.get("status") != "finished":
        row.update(status="diverged", error=record.get("error", ""), seconds=round(record.get("seconds", 0.0), 1))
        return row
    result = record["result"]
    row.update(status="finished", valid_metric=result["valid_metric"], best_valid_score=result["best_valid_score"],
               best_valid_result=record["valid_metrics"], test_result=record["metrics"],
               best_epoch=result["best_epoch"], epochs_run=result["epochs_run"],
               seconds=round(record["wall_seconds"], 1))
    return row


class Search:
    """One search: its trials, the table and the best setting.

    Each trial is a run of the benchmark's run store and executor (``bench/runs.py``): profile
    ``tuning/<search>``, variant ``default`` or ``trial<n>``, its record and log where the benchmark keeps its
    own (``store``: ``$RECBOLE_FAMOUS_BENCH_DIR``, else ``results/bench``), run in its own process, resumed from
    its last validated epoch when the search was killed during it. A finished trial's checkpoints are removed
    (a search keeps the table, not the models). ``output_dir`` gets the table and ``best.yaml``; the trials of
    searches made before (``output_dir/trials/<n>.json``) are read back, not rerun."""

    PROFILE = "tuning"

    def __init__(self, model, dataset, params_file, config_files=(), overrides=None, algo="bayes", max_evals=10,
                 output_dir=None, include_default=True, seed=None, out=None, store=None, launcher=None):
        require_hyperopt()
        from recbole_famous import pipeline
        from recbole_famous.bench import runs
        from recbole_famous.config import read_yaml

        if algo not in ("bayes", "random", "exhaustive"):
            raise UsageError(f"unknown --algo '{algo}': bayes, random or exhaustive")
        if max_evals is not None and max_evals < 1:
            raise UsageError(f"--max_evals must be at least 1, got {max_evals}")
        self.runs = runs
        self.params = parse_params_file(params_file)
        self.params_file = params_file
        self.config_files, self.overrides = list(config_files or []), dict(overrides or {})
        config = pipeline.build_config(model, dataset, self.config_files, self.overrides)
        check_names(self.params, config, params_file)
        if algo == "exhaustive":
            continuous = [p for p in self.params if p.kind != "choice"]
            if continuous:
                p = continuous[0]
                raise UsageError(f"{params_file}:{p.line}: --algo=exhaustive enumerates choice parameters only; "
                                 f"{p.name} is {p.kind}")
        self.model, self.dataset = config["model"], config["dataset"]
        self.valid_metric, self.bigger = config["valid_metric"], bool(config["valid_metric_bigger"])
        self.default_values = {p.name: config[p.name] for p in self.params}
        self.run_seed = int(config["seed"])
        self.seed = int(self.run_seed if seed is None else seed)
        # every trial's overrides: the config files' keys under the command's (RecBole's order), the run's seed
        self.base = {}
        for path in self.config_files:
            self.base.update(read_yaml(path))
        self.base.update(self.overrides)
        self.base["seed"] = self.run_seed
        self.algo, self.max_evals, self.include_default = algo, max_evals, include_default
        stem = os.path.splitext(os.path.basename(params_file))[0]
        base = config["results_dir"] if "results_dir" in config else "results"
        self.output_dir = output_dir or os.path.join(base, "tuning", f"{self.model}-{self.dataset}-{stem}")
        self.name = os.path.basename(os.path.normpath(self.output_dir))
        self.store = store or runs.default_out()
        self.profile = f"{self.PROFILE}/{self.name}"
        self.launcher = launcher  # None: the benchmark's worker process (tests stand in for it)
        self.out = out or sys.stdout
        self.manifest = {
            "model": self.model, "dataset": self.dataset, "algo": algo, "seed": self.seed,
            "params": [[p.name, p.kind, list(p.args)] for p in self.params],
            "config_files": self.config_files, "overrides": {k: self.overrides[k] for k in sorted(self.overrides)},
            "valid_metric": self.valid_metric, "include_default": include_default,
        }
        self._next = 0

    # --- files -------------------------------------------------------------------------------------------------
    def _path(self, *parts):
        return os.path.join(self.output_dir, *parts)

    def manifest_path(self) -> str:
        """``search.json`` (what the search is), beside its trials in the run store."""
        return os.path.join(self.store, "runs", self.profile, "search.json")

    def _check_manifest(self) -> None:
        mine = json.loads(json.dumps(self.manifest, default=str))
        for path, where in ((self.manifest_path(), f"the run store's {os.path.dirname(self.manifest_path())}"),
                            (self._path("search.json"), self.output_dir)):  # the latter: a search made before
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8") as f:
                before = json.load(f)
            diff = sorted(k for k in set(before) | set(mine) if before.get(k) != mine.get(k))
            if diff:
                raise UsageError(f"{where} holds another search (differs in {', '.join(diff)}): "
                                 f"use another --output_dir or remove it")

    def _start_files(self) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        if not os.path.isfile(self.manifest_path()):
            os.makedirs(os.path.dirname(self.manifest_path()), exist_ok=True)
            _write_atomic(self.manifest_path(), json.dumps(self.manifest, indent=2, default=str) + "\n")

    def spec(self, trial: str, values: dict):
        """The run-store spec of one trial: the search's overrides with the trial's values on top."""
        from recbole_famous.bench.plan import RunSpec

        overrides = {**self.base, **values}
        return RunSpec(self.model, self.dataset, self.run_seed, self.profile, trial_variant(trial),
                       json.dumps(overrides, sort_keys=True, default=str))

    def _legacy(self, trial: str):
        """A trial of a search made before trials were run-store records (``output_dir/trials/<n>.json``)."""
        path = self._path("trials", f"{trial}.json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def _stored(self, spec):
        """The trial's row from the run store, when it finished or diverged; else None."""
        record = self.runs.load_record(self.runs.record_path(self.store, spec))
        if record is None:
            record = self.runs.load_failure(self.store, spec)
            if record is None or record.get("error_type") != "NonFiniteLoss":
                return None
        return trial_row(record, [p.name for p in self.params])

    def records(self) -> list[dict]:
        """Every trial on disk, as rows: the run store's, and those of a search made before."""
        import glob

        names = [p.name for p in self.params]
        rows = {}
        legacy = self._path("trials")
        if os.path.isdir(legacy):
            for name in sorted(os.listdir(legacy)):
                if name.endswith(".json"):
                    with open(os.path.join(legacy, name), encoding="utf-8") as f:
                        row = json.load(f)
                    rows[row["trial"]] = row
        pattern = os.path.join(self.store, "runs", self.profile, self.dataset, f"{self.model}--*",
                               f"seed{self.run_seed}.*json")
        for path in sorted(glob.glob(pattern)):
            record = None if path.endswith(".job.json") else self.runs.load_record(path)
            if record is None or (path.endswith(".failed.json") and record.get("error_type") != "NonFiniteLoss"):
                continue
            row = trial_row(record, names)
            rows.setdefault(row["trial"], row)
        return sorted(rows.values(), key=lambda r: (r["trial"] != "default", str(r["trial"])))

    # --- trials ------------------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _run_trial(self, trial: str, values: dict, label: str) -> dict:
        spec = self.spec(trial, values)
        where = self.runs.record_path(self.store, spec)
        row = self._legacy(trial)
        if row is not None:
            where = self._path("trials", f"{trial}.json")
        state = self.runs.state(self.store, spec)
        if row is None and state == "changed":
            keys = self.runs.changed_keys(self.runs.load_record(where), spec)
            raise UsageError(f"trial {trial} in the run store was made with other settings ({', '.join(keys)}): "
                             f"use another --output_dir or remove {where}")
        if row is None:
            row = self._stored(spec)
            if row is not None:  # a search killed right after the trial finished kept its checkpoints
                shutil.rmtree(self.runs.checkpoint_dir(self.store, spec), ignore_errors=True)
        if row is not None:
            if _canon(row["params"]) != _canon(values):
                raise UsageError(f"trial {trial} on disk was made with other values ({row['params']} != {values}): "
                                 f"use another --output_dir or remove {where}")
            self._say(f"{label}: finished before, not rerun: {self._summary(row)}")
            return row
        if state == "running":
            raise UsageError(f"trial {trial} is being run by another process ({where}.lock): wait for it")
        self._start_files()
        self._say(f"{label}: {values} ...")
        import torch

        record = self.runs.run_one(spec, self.store, retry_failed=True, echo=self._say, launcher=self.launcher,
                                   threads=torch.get_num_threads())
        if record is None:
            row = self._stored(spec)
            if row is None:
                failed = self.runs.load_failure(self.store, spec) or {}
                raise UsageError(f"trial {trial} failed (exit {failed.get('exit_code')}): "
                                 f"{(failed.get('log_tail') or [''])[-1]}; log: {failed.get('log')}")
        else:
            shutil.rmtree(self.runs.checkpoint_dir(self.store, spec), ignore_errors=True)
            row = trial_row(record, [p.name for p in self.params])
        self.write_outputs()
        self._say(f"{label}: {self._summary(row)}")
        return row

    def _summary(self, record: dict) -> str:
        if record["status"] != "finished":
            return f"{record['status']} ({record.get('error', '')})"
        test = record["test_result"].get(self.valid_metric.lower(), record["test_result"].get(self.valid_metric))
        return (f"valid {self.valid_metric} {record['best_valid_score']:.4f} (test {test:.4f}, not used for the "
                f"choice) in {record['seconds']:.0f} s")

    def objective(self, config_dict: dict, fixed_config_files=None) -> dict:
        """``HyperTuning``'s objective function: one trial (run, or read back when it is on disk)."""
        self._next += 1
        values = {p.name: p.value(config_dict[p.name]) for p in self.params}
        record = self._run_trial(f"{self._next:04d}", values, f"trial {self._next}/{self.max_evals_effective}")
        if record["status"] != "finished":
            raise TrialFailed(record.get("error", record["status"]))
        return {"model": self.model, "best_valid_score": record["best_valid_score"],
                "valid_score_bigger": self.bigger, "best_valid_result": record["best_valid_result"],
                "test_result": record["test_result"]}

    def run(self) -> dict:
        """Run (or continue) the search; return the best record."""
        self._check_manifest()
        logging.getLogger("hyperopt").setLevel(logging.WARNING)
        tuner = Tuner(self.objective, params_dict=space_dict(self.params), algo=self.algo,
                       max_evals=self.max_evals or 10)
        if self.algo == "exhaustive" and self.max_evals:
            tuner.max_evals = min(int(tuner.max_evals), self.max_evals)
        self.max_evals_effective = int(tuner.max_evals)
        if self.include_default:
            self._run_trial("default", dict(self.default_values), "default")
        tuner.search(self.seed)
        best = self.write_outputs()
        if best is None:
            raise UsageError("no trial finished (every one diverged): see the logs under "
                             + os.path.join(self.store, "logs", self.profile))
        self._say(f"best: trial {best['trial']} {best['params']}: {self._summary(best)}")
        self._say(f"table: {self._path('results.md')} / results.csv; best setting: {self._path('best.yaml')} "
                  f"(--config_files={self._path('best.yaml')}); trials: {os.path.join(self.store, 'runs', self.profile)}")
        return best

    # --- outputs -----------------------------------------------------------------------------------------------
    def best(self, records=None):
        done = [r for r in (records if records is not None else self.records()) if r["status"] == "finished"]
        if not done:
            return None
        key = (lambda r: r["best_valid_score"]) if self.bigger else (lambda r: -r["best_valid_score"])
        return max(done, key=key)  # the first of equal scores (default, then trial order)

    def write_outputs(self):
        records = self.records()
        best = self.best(records)
        metrics = []
        for r in records:
            for m in list(r.get("best_valid_result", {})) + list(r.get("test_result", {})):
                if m not in metrics:
                    metrics.append(m)
        names = [p.name for p in self.params]
        header = (["trial"] + names + ["status", f"valid {self.valid_metric} (choice)"]
                  + [f"valid {m}" for m in metrics] + [f"test {m} (not used for the choice)" for m in metrics]
                  + ["best_epoch", "epochs_run", "seconds"])
        rows = []
        for r in records:
            v, t = r.get("best_valid_result", {}), r.get("test_result", {})
            rows.append([r["trial"]] + [r["params"][n] for n in names] + [r["status"], r.get("best_valid_score", "")]
                        + [v.get(m, "") for m in metrics] + [t.get(m, "") for m in metrics]
                        + [r.get("best_epoch", ""), r.get("epochs_run", ""), r["seconds"]])
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([header] + rows)
        _write_atomic(self._path("results.csv"), buf.getvalue())

        first_metric, last_metric = 1 + len(names) + 1, len(header) - 3  # the score columns, 4 decimals

        def cell(i, x):
            return f"{x:.4f}" if first_metric <= i < last_metric and isinstance(x, float) else str(x)

        md = [f"# {self.model} on {self.dataset}: {self.algo} search over {os.path.basename(self.params_file)}", "",
              f"Chosen on the validation split ({self.valid_metric}); the test columns are reported only and were "
              f"never used for the choice. Each trial is one run with the search's config "
              f"(config_files {self.config_files}, overrides {self.manifest['overrides']}); `default` is the "
              f"config's own values. Best: **{best['trial'] if best else '-'}** (marked *).", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r, row in zip(records, rows):
            mark = "*" if best is not None and r is best else ""
            md.append("| " + " | ".join([str(row[0]) + mark] + [cell(i, x) for i, x in enumerate(row) if i]) + " |")
        _write_atomic(self._path("results.md"), "\n".join(md) + "\n")
        if best is not None:
            import yaml

            text = (f"# best of the search in {self.output_dir}: trial {best['trial']}, valid {self.valid_metric} "
                    f"{best['best_valid_score']:.6f} (test not used for the choice).\n"
                    f"# Use with --config_files; the search's budget and other settings are not included.\n"
                    + yaml.safe_dump(best["params"], sort_keys=False))
            _write_atomic(self._path("best.yaml"), text)
        return best
