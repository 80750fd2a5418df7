"""Hyper-parameter search in RecBole's conventions: a params file, ``recbole.trainer.HyperTuning`` and hyperopt.

The command line, the params file's format and the output folder: ``recbole_famous/cli/tune.py``
(``run_recbole_famous.py tune --help``).

Each trial is one run of the plugin's own pipeline (``recbole_famous.runner.run``) with the trial's values on top
of the run's config (``--config_files``, ``--key=value``; the budget, ``epochs`` / ``stopping_step``, comes from
there); the best epoch and the trial are chosen on the validation split (``valid_metric``), the test split is
evaluated and reported, never used for the choice. With ``--no_default`` absent, the config's own values of the
searched parameters run first as the ``default`` trial (outside hyperopt's sampling), so that the table compares
the tuned setting with the default at the same budget."""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
import time
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


class Search:
    """One search: its trials on disk, the runs, the table and the best setting."""

    def __init__(self, model, dataset, params_file, config_files=(), overrides=None, algo="bayes", max_evals=10,
                 output_dir=None, include_default=True, seed=None, out=None):
        require_hyperopt()
        from recbole_famous import pipeline, runner

        if algo not in ("bayes", "random", "exhaustive"):
            raise UsageError(f"unknown --algo '{algo}': bayes, random or exhaustive")
        if max_evals is not None and max_evals < 1:
            raise UsageError(f"--max_evals must be at least 1, got {max_evals}")
        self.runner = runner
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
        self.seed = int(config["seed"] if seed is None else seed)
        self.algo, self.max_evals, self.include_default = algo, max_evals, include_default
        stem = os.path.splitext(os.path.basename(params_file))[0]
        base = config["results_dir"] if "results_dir" in config else "results"
        self.output_dir = output_dir or os.path.join(base, "tuning", f"{self.model}-{self.dataset}-{stem}")
        self.out = out or sys.stdout
        self.manifest = {
            "model": self.model, "dataset": self.dataset, "algo": algo, "seed": self.seed,
            "params": [[p.name, p.kind, list(p.args)] for p in self.params],
            "config_files": self.config_files, "overrides": {k: self.overrides[k] for k in sorted(self.overrides)},
            "valid_metric": self.valid_metric, "include_default": include_default,
        }
        self._next = 0
        self._devnull = None

    # --- files -------------------------------------------------------------------------------------------------
    def _path(self, *parts):
        return os.path.join(self.output_dir, *parts)

    def _check_manifest(self) -> None:
        path = self._path("search.json")
        if not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
        mine = json.loads(json.dumps(self.manifest, default=str))
        diff = sorted(k for k in set(before) | set(mine) if before.get(k) != mine.get(k))
        if diff:
            raise UsageError(f"{self.output_dir} holds another search (differs in {', '.join(diff)}): "
                             f"use another --output_dir or remove it")

    def _start_files(self) -> None:
        os.makedirs(self._path("trials"), exist_ok=True)
        if not os.path.isfile(self._path("search.json")):
            _write_atomic(self._path("search.json"), json.dumps(self.manifest, indent=2, default=str) + "\n")

    def records(self) -> list[dict]:
        folder = self._path("trials")
        if not os.path.isdir(folder):
            return []
        out = []
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    out.append(json.load(f))
        return sorted(out, key=lambda r: (r["trial"] != "default", str(r["trial"])))

    def _load(self, trial):
        path = self._path("trials", f"{trial}.json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    # --- trials ------------------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _run_trial(self, trial: str, values: dict, label: str) -> dict:
        record = self._load(trial)
        if record is not None:
            if _canon(record["params"]) != _canon(values):
                raise UsageError(f"{self._path('trials', trial + '.json')} was made with other values "
                                 f"({record['params']} != {values}): use another --output_dir or remove it")
            self._say(f"{label}: finished before, not rerun: {self._summary(record)}")
            return record
        self._start_files()
        self._say(f"{label}: {values} ...")
        overrides = {**self.overrides, **values,
                     "results_dir": self._path("runs"), "checkpoint_dir": self._path("checkpoints"),
                     "show_progress": False}
        t0 = time.perf_counter()
        from recbole_famous.errors import NonFiniteLoss

        if self._devnull is None:
            self._devnull = open(os.devnull, "w")
        record = {"trial": trial, "params": values}
        try:
            with contextlib.redirect_stdout(self._devnull):  # the run's console log; its run.log keeps it all
                result = self.runner.run(self.model, self.dataset, self.config_files, overrides, run_id=trial)
        except NonFiniteLoss as exc:
            record.update(status="diverged", error=str(exc))
        else:
            record.update(
                status="finished", valid_metric=result.valid_metric, best_valid_score=result.best_valid_score,
                best_valid_result=result.best_valid_result, test_result=result.test_result,
                best_epoch=result.best_epoch, epochs_run=result.epochs_run,
            )
        finally:
            shutil.rmtree(self._path("checkpoints"), ignore_errors=True)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        _write_atomic(self._path("trials", f"{trial}.json"), json.dumps(record, indent=2, default=str) + "\n")
        self.write_outputs()
        self._say(f"{label}: {self._summary(record)}")
        return record

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
        try:
            if self.include_default:
                self._run_trial("default", dict(self.default_values), "default")
            tuner.search(self.seed)
        finally:
            if self._devnull is not None:
                self._devnull.close()
                self._devnull = None
        best = self.write_outputs()
        if best is None:
            raise UsageError("no trial finished (every one diverged): see " + self._path("runs"))
        self._say(f"best: trial {best['trial']} {best['params']}: {self._summary(best)}")
        self._say(f"table: {self._path('results.md')} / results.csv; best setting: {self._path('best.yaml')} "
                  f"(--config_files={self._path('best.yaml')})")
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
