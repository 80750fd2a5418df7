"""One benchmark run, in its own process: ``python -m recbole_famous.bench.worker SPEC_JSON OUT_JSON``.

Trains and tests through ``recbole_famous.runner.run`` (RecBole's pipeline, the plugin's layering), then
rebuilds the model from its best checkpoint and measures efficiency (``efficiency.py``). Peak memory is
this process's max resident set size (``resource.getrusage``): one process per run, so it is the run's own
peak (training and evaluation), not the benchmark's. The result JSON is written atomically, and only when
the run has finished: a run killed half-way leaves no JSON, and ``runs.py`` reruns it on resume.

A run resumed from an earlier attempt's checkpoint took several processes. Each process keeps its CPU and wall
seconds up to its last validated epoch in ``attempts.json`` in the run's checkpoint folder (``Attempts``), so the
record's ``cpu_seconds_run``, ``wall_seconds_run`` and ``wall_seconds`` sum every process whose epochs the run kept
(``efficiency.processes`` counts them); training seconds per epoch come from the checkpoint's own epoch times.

Threads: the job's ``threads`` train (``bench run --threads``, default the profile's), its ``timing_threads`` (the
profile's) time inference, so a run given a free core's thread still times inference like the table's other runs.
``efficiency.train_threads`` lists the torch threads its processes trained with: more than the profile's makes its
training seconds and CPU seconds no longer the profile's figures (the tables mark them, ``table.py``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import sys
import time

from recbole_famous.files import write_json

ERROR_PREFIX = "error: "  # the last line of a run that stopped on a known error: "error: <type>: <message>"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _git() -> dict:
    """The code the run used: commit, and whether the package had uncommitted changes."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "recbole_famous", "props"], cwd=repo,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return {}
    return {"commit": commit, "uncommitted_changes": bool(dirty)}


def machine() -> dict:
    import torch

    return {"git": _git(), "host": platform.node(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_at_start": os.getloadavg(), "python": platform.python_version(), "torch": torch.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


def resume_point(checkpoint_dir: str) -> str | None:
    """The newest per-epoch resume checkpoint an earlier, killed attempt of this run left (the folder is the
    run's own), if the runner writes them (``<name>.resume.pth``)."""
    try:
        files = [os.path.join(checkpoint_dir, f) for f in os.listdir(checkpoint_dir) if f.endswith(".resume.pth")]
    except OSError:
        return None
    return max(files, key=os.path.getmtime) if files else None


class Attempts:
    """The processes of one run, in ``<checkpoint_dir>/attempts.json``: ``[{"id", "cpu_seconds", "wall_seconds",
    "epochs", "threads"}]`` (``threads``: the torch threads it trained with; absent in files older than the key).
    ``epoch(done)`` records this process's totals after each validated epoch (written atomically), so a process
    killed later still counts up to the epoch its successor resumes from. ``fresh()`` forgets the earlier
    processes (the run starts over); ``earlier()`` is what they spent."""

    FILE = "attempts.json"

    def __init__(self, checkpoint_dir: str, clock=time.perf_counter, cpu=_cpu_seconds, threads: int | None = None):
        self.path = os.path.join(checkpoint_dir, self.FILE)
        self.clock, self.cpu, self.threads = clock, cpu, threads
        self.start, self.cpu_start = clock(), cpu()
        self.id = f"{os.getpid()}-{datetime.datetime.now(datetime.timezone.utc).isoformat()}"
        try:
            with open(self.path, encoding="utf-8") as f:
                self.before = [a for a in json.load(f) if a.get("id") != self.id]
        except (OSError, ValueError):
            self.before = []

    def fresh(self) -> None:
        self.before = []
        self._write([])

    def epoch(self, done: int) -> None:
        mine = {"id": self.id, "cpu_seconds": self.cpu() - self.cpu_start, "wall_seconds": self.clock() - self.start,
                "epochs": done, "threads": self.threads}
        self._write(self.before + [mine])

    def earlier(self) -> dict:
        return {"processes": len(self.before), "cpu_seconds": sum(a["cpu_seconds"] for a in self.before),
                "wall_seconds": sum(a["wall_seconds"] for a in self.before)}

    def train_threads(self, unrecorded: int) -> list:
        """The torch threads this run's processes trained with, this one's included; an earlier process that
        recorded none ran before ``bench run --threads`` existed, so with ``unrecorded`` (the profile's)."""
        return sorted({a.get("threads") or unrecorded for a in self.before} | {self.threads or unrecorded})

    def _write(self, attempts) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_json(self.path, attempts)


def _run_or_resume(run, spec, overrides, checkpoint_dir, attempts: Attempts | None = None):
    """``run`` (``runner.run``), continued from a killed attempt's last validated epoch when there is one."""
    from recbole_famous.errors import UsageError

    callback = (lambda epoch, score: attempts.epoch(epoch + 1)) if attempts is not None else None
    point = resume_point(checkpoint_dir)
    if point:
        print(f"resuming from {point}", flush=True)
        try:
            return run(spec["model"], spec["dataset"], overrides=overrides, saved=True, resume=point,
                       epoch_callback=callback)
        except UsageError as exc:  # e.g. an incompatible checkpoint: start the run afresh
            print(f"cannot resume ({exc}); starting afresh", flush=True)
    if attempts is not None:
        attempts.fresh()  # what earlier processes did is not part of this run
    return run(spec["model"], spec["dataset"], overrides=overrides, saved=True, epoch_callback=callback)


def execute(job: dict) -> dict:
    """Run ``job`` (``{"spec": ..., "paths": {...}}``) and return the run record (see ``runs.py``)."""
    from recbole_famous.bench import efficiency, trained
    from recbole_famous.runner import run

    import torch

    spec, paths = job["spec"], job["paths"]
    threads = int(job.get("threads") or 1)
    timing_threads = int(job.get("timing_threads") or threads)
    torch.set_num_threads(threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    rss_start = _rss_mb()
    overrides = {**spec["overrides"], **paths, "show_progress": False}
    t0 = time.perf_counter()
    attempts = Attempts(paths["checkpoint_dir"], threads=threads)
    result = _run_or_resume(run, spec, overrides, paths["checkpoint_dir"], attempts)
    rss_train, cpu_run = _rss_mb(), _cpu_seconds()
    earlier = attempts.earlier()
    record = {"spec": spec, "paths": paths, "status": "finished", "result": result.to_dict()}
    loaded = trained.load_run(record)
    model = loaded.model
    torch.set_num_threads(timing_threads)  # inference timed as the table's other runs are
    timing = efficiency.time_full_ranking(model, loaded.test_data)
    usage = model.expert_usage_share() if hasattr(model, "expert_usage_share") else None
    eff = {
        "params_total": efficiency.count_params(model),
        "params_active": efficiency.active_params(model),
        "train_seconds_per_epoch": (sum(result.epoch_seconds) / len(result.epoch_seconds))
        if result.epoch_seconds else None,
        "infer_ms_per_1k_users": timing["infer_ms_per_1k_users"],
        "infer_users": timing["users"],
        "peak_rss_mb": _rss_mb(),
        "peak_rss_train_mb": rss_train,
        "rss_after_imports_mb": rss_start,
        # CPU seconds of this process for the whole runner.run (data, training, validation, test): with one torch
        # thread about the wall time the run would take on an idle core, whatever the machine's load was
        # CPU and wall seconds of the earlier processes of a resumed run (``Attempts``) are added
        "cpu_seconds_run": cpu_run + earlier["cpu_seconds"],
        "wall_seconds_run": (result.data_seconds or 0) + (result.fit_seconds or 0) + (result.test_seconds or 0)
        + earlier["wall_seconds"],
        "processes": 1 + earlier["processes"],
        "train_threads": attempts.train_threads(timing_threads),
        "timing_threads": timing_threads,
    }
    record.update(
        metrics=result.test_result, valid_metrics=result.best_valid_result, efficiency=eff,
        expert_share=usage, machine=info, started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_seconds=time.perf_counter() - t0 + earlier["wall_seconds"],
    )
    return record


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m recbole_famous.bench.worker JOB_JSON OUT_JSON", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    from recbole_famous.errors import exit_code

    try:
        record = execute(job)
    except Exception as exc:  # noqa: BLE001 - a known error is one line; a bug keeps its traceback
        code = exit_code(exc)
        if code is None:
            raise
        print(f"{ERROR_PREFIX}{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)  # read by runs.failure
        return code
    write_json(argv[1], record)
    print(f"finished: {argv[1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

