"""One benchmark run, in its own process: ``python -m recbole_famous.bench.worker SPEC_JSON OUT_JSON``.

Trains and tests through ``recbole_famous.runner.run`` (RecBole's pipeline, the plugin's layering), then
rebuilds the model from its best checkpoint and measures efficiency (``efficiency.py``). Peak memory is
this process's max resident set size (``resource.getrusage``): one process per run, so it is the run's own
peak (training and evaluation), not the benchmark's. The result JSON is written atomically, and only when
the run has finished: a run killed half-way leaves no JSON, and ``runs.py`` reruns it on resume.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


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


def _run_or_resume(run, spec, overrides, checkpoint_dir):
    """``run`` (``runner.run``), continued from a killed attempt's last validated epoch when there is one."""
    from recbole_famous.errors import UsageError

    point = resume_point(checkpoint_dir)
    if point:
        print(f"resuming from {point}", flush=True)
        try:
            return run(spec["model"], spec["dataset"], overrides=overrides, saved=True, resume=point)
        except UsageError as exc:  # e.g. an incompatible checkpoint: start the run afresh
            print(f"cannot resume ({exc}); starting afresh", flush=True)
    return run(spec["model"], spec["dataset"], overrides=overrides, saved=True)


def execute(job: dict) -> dict:
    """Run ``job`` (``{"spec": ..., "paths": {...}}``) and return the run record (see ``runs.py``)."""
    from recbole_famous.bench import efficiency, trained
    from recbole_famous.runner import run

    import torch

    spec, paths = job["spec"], job["paths"]
    torch.set_num_threads(int(job.get("threads") or 1))
    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    rss_start = _rss_mb()
    overrides = {**spec["overrides"], **paths, "show_progress": False}
    t0 = time.perf_counter()
    result = _run_or_resume(run, spec, overrides, paths["checkpoint_dir"])
    rss_train, cpu_run = _rss_mb(), _cpu_seconds()
    record = {"spec": spec, "paths": paths, "status": "finished", "result": result}
    loaded = trained.load_run(record)
    model = loaded.model
    timing = efficiency.time_full_ranking(model, loaded.test_data)
    usage = model.expert_usage_share() if hasattr(model, "expert_usage_share") else None
    eff = {
        "params_total": efficiency.count_params(model),
        "params_active": efficiency.active_params(model),
        "train_seconds_per_epoch": (sum(result["epoch_seconds"]) / len(result["epoch_seconds"]))
        if result["epoch_seconds"] else None,
        "infer_ms_per_1k_users": timing["infer_ms_per_1k_users"],
        "infer_users": timing["users"],
        "peak_rss_mb": _rss_mb(),
        "peak_rss_train_mb": rss_train,
        "rss_after_imports_mb": rss_start,
        # CPU seconds of this process for the whole runner.run (data, training, validation, test): with one torch
        # thread about the wall time the run would take on an idle core, whatever the machine's load was
        "cpu_seconds_run": cpu_run,
        "wall_seconds_run": result.get("data_seconds", 0) + result.get("fit_seconds", 0) + result.get("test_seconds", 0),
    }
    record.update(
        metrics=result["test_result"], valid_metrics=result["best_valid_result"], efficiency=eff,
        expert_share=usage, machine=info, started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_seconds=time.perf_counter() - t0,
    )
    return record


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m recbole_famous.bench.worker JOB_JSON OUT_JSON", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    from recbole_famous.errors import UsageError

    try:
        record = execute(job)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write_json(argv[1], record)
    print(f"finished: {argv[1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

