"""Run planned benchmark runs one at a time, one JSON per run, resumable.

Layout under the output folder, the run store (``default_out()``: ``$RECBOLE_FAMOUS_BENCH_DIR`` where it is set, else
``results/bench``, git-ignored). A store outside the working tree (``export RECBOLE_FAMOUS_BENCH_DIR=~/famous-bench``)
outlives a checkout laid anew: its runs resume from it, and its finished runs are not rerun:

* ``runs/<profile>/<dataset>/<model>[--<variant>]/seed<N>.json``: the run record, written atomically by the
  run's own process only when it has finished (``worker.py``). Its presence means "finished": a resumed
  benchmark never reruns it.
* ``...seed<N>.failed.json``: a run that exited with an error (exit code, log tail). Skipped on resume
  unless ``retry_failed``; a later success removes it.
* ``...seed<N>.lock``: the pids of the benchmark and its run; a live lock makes another benchmark skip the run (a
  pid that started after the lock was written is another process that got the number after a restart: stale).
* ``logs/...seed<N>.log``: the run's full log, appended to by each start of the run (a resumed run keeps the log
  of the epochs before it; a ``=== ... ===`` line marks each start); ``saved/...``: its best checkpoint;
  ``runner/``: the runner's own ``result.json`` and ``run.log``.

While a run trains, the benchmark prints a line per validated epoch (read from its log).

A run that the store already holds under another name, with the same settings (a profile adopted what one of
its variants checked), is not trained again: its record is copied as this run's, with ``same_run_as`` (``adopt``).

A run killed half-way leaves no record, so resuming runs it again: from the last validated epoch when the
runner left a ``.resume.pth`` in the run's checkpoint folder (``worker.resume_point``), else from its start.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

DEFAULT_OUT = os.path.join("results", "bench")
STORE_ENV = "RECBOLE_FAMOUS_BENCH_DIR"


def default_out() -> str:
    """The run store: ``$RECBOLE_FAMOUS_BENCH_DIR`` (``~`` expanded) where set and not empty, else ``results/bench``."""
    env = os.environ.get(STORE_ENV, "").strip()
    return os.path.expanduser(env) if env else DEFAULT_OUT


def record_path(out_dir: str, spec) -> str:
    return os.path.join(out_dir, "runs", spec.key)


def checkpoint_dir(out_dir: str, spec) -> str:
    """The run's own checkpoint folder (``saved/<profile>/<dataset>/<model>/seed<N>``): its best ``.pth`` and, while
    it trains, its ``.resume.pth``."""
    return os.path.abspath(os.path.join(out_dir, "saved", os.path.splitext(spec.key)[0]))


# Inference results computed from a finished run's best checkpoint and cached beside its record as
# ``seed<N>.<name>.json``: the routing probe's diagnostics (``routing.py``) and Table 5's forced-expert metrics
# (``ablations.py``). ``archive.py`` carries them with the record, so that their reports regenerate on a machine
# that never had the checkpoint.
DERIVED = ("routing", "table5")


def derived_path(record_path: str, name: str) -> str:
    """``seed<N>.<name>.json`` beside the run record ``seed<N>.json`` (``name`` one of ``DERIVED``)."""
    if name not in DERIVED:
        raise ValueError(f"unknown derived cache {name!r}; known: {DERIVED}")
    return _sibling(record_path, f".{name}.json")


def _sibling(path: str, suffix: str) -> str:
    return path[: -len(".json")] + suffix


def load_record(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def finished_paths(out_dir: str, profile: str, datasets=None, variants=None) -> list:
    """The record of every finished run of ``profile`` in the store (``datasets`` only, when given): what a
    profile's Table 2 covers, whichever command ran it. Runs of named variants (``<model>--<variant>``: ablations,
    a profile's ``variants``) are left out, unless ``variants`` names them: then only theirs."""
    paths = []
    for path in sorted(glob.glob(os.path.join(out_dir, "runs", profile, "*", "*", "seed*.json"))):
        dataset, model = path.split(os.sep)[-3:-1]
        variant = model.split("--", 1)[1] if "--" in model else ""
        if re.fullmatch(r"seed-?\d+\.json", os.path.basename(path)) and variant in (variants or [""]) \
                and (not datasets or dataset in datasets):
            paths.append(path)
    return paths


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from Linux's /proc; None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, after the command name
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def lock_is_live(lock_path: str) -> bool:
    """A lock names the benchmark's and its run's pids; it is live while one of them runs. A pid that runs but
    started after the lock was last written is another process that got the number after a restart (the lock
    is stale)."""
    try:
        with open(lock_path) as f:
            pids = [int(p) for p in f.read().split()]
        written = os.path.getmtime(lock_path)
    except (OSError, ValueError):
        return False
    for pid in pids:
        if _pid_alive(pid):
            started = process_start(pid)
            if started is None or started <= written + 1.0:
                return True
    return False


def changed_keys(record: dict, spec) -> list:
    """Settings in which a finished record differs from ``spec`` (the profile was edited since it ran)."""
    old, new = record.get("spec", {}).get("overrides", {}), spec.overrides_dict()
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def state(out_dir: str, spec) -> str:
    """``finished``, ``changed`` (finished with other settings), ``running`` (live lock), ``failed`` or ``pending``."""
    path = record_path(out_dir, spec)
    record = load_record(path)
    if record is not None:
        return "changed" if changed_keys(record, spec) else "finished"
    if lock_is_live(_sibling(path, ".lock")):
        return "running"
    if os.path.isfile(_sibling(path, ".failed.json")):
        return "failed"
    return "pending"


SIBLINGS = (".peruser.npz", ".routing.json")  # what a finished run keeps beside its record


def twin_path(out_dir: str, spec) -> str | None:
    """A finished record of the same run stored under another name: the model's own folder or one of its named
    variants (``<model>--<variant>``), same profile, dataset and seed, and the same settings (``overrides``).
    It happens when a profile adopts what a variant checked (converged: ``grouped`` batches became every baseline's
    setting, so SASRec--grouped's runs are SASRec's). None when there is none."""
    own = record_path(out_dir, spec)
    folder, name = os.path.dirname(os.path.dirname(own)), os.path.basename(own)
    variants = sorted(glob.glob(os.path.join(folder, f"{spec.model}--*", name)))
    candidates = [os.path.join(folder, spec.model, name)] + variants
    for path in candidates:
        record = load_record(path) if path != own else None
        if record and record.get("spec", {}).get("overrides") == spec.overrides_dict() \
                and record.get("spec", {}).get("model") == spec.model:
            return path
    return None


def adopt(out_dir: str, spec, twin: str) -> dict:
    """Make ``twin`` (``twin_path``) this run's record, without training: the record with this run's spec and
    ``same_run_as`` (the twin's store key), and its per-user values and routing beside it. The run id and
    checkpoint stay the twin's (the per-user cache is keyed by them)."""
    record = load_record(twin)
    record["spec"] = spec_dict(spec)
    record["same_run_as"] = os.path.relpath(twin, os.path.join(out_dir, "runs"))
    path = record_path(out_dir, spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for suffix in SIBLINGS:
        if os.path.isfile(_sibling(twin, suffix)):
            shutil.copyfile(_sibling(twin, suffix), _sibling(path, suffix))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)  # last: its presence means "finished"
    for stale in (".failed.json", ".job.json"):
        if os.path.isfile(_sibling(path, stale)):
            os.remove(_sibling(path, stale))
    return record


def spec_dict(spec) -> dict:
    d = dataclasses.asdict(spec)
    d["overrides"] = spec.overrides_dict()
    return d


_EVALUATED = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s, valid_score: ([\d.]+)\]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^error: ([A-Za-z_][A-Za-z0-9_]*): (.*)$")


def epoch_lines(text: str) -> list:
    """``(epoch, valid score)`` of each validated epoch that RecBole's trainer logged in ``text``."""
    return [(int(m.group(1)), float(m.group(3))) for m in _EVALUATED.finditer(_ANSI.sub("", text))]


def launch_subprocess(job_path: str, out_path: str, log_path: str, echo=None, poll_seconds: float = 30.0) -> int:
    """Run the job in a fresh Python process (its own peak memory, nothing shared); returns its exit code.
    The log is appended to (a resumed run keeps the earlier epochs' lines); with ``echo``, a line per validated
    epoch is printed as the log shows it."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} start of {os.path.basename(job_path)} ===\n")
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen([sys.executable, "-m", "recbole_famous.bench.worker", job_path, out_path],
                                stdout=log, stderr=subprocess.STDOUT)
        with open(_sibling(out_path, ".lock"), "a") as lock:  # the run is live while either process is
            lock.write(f" {proc.pid}")
        try:
            while True:
                try:
                    code = proc.wait(timeout=poll_seconds)
                except subprocess.TimeoutExpired:
                    code = None
                if echo is not None:
                    offset = echo_epochs(log_path, offset, echo)
                if code is not None:
                    return code
        except BaseException:  # Ctrl-C / SIGTERM of the benchmark stops its run too
            proc.terminate()
            proc.wait()
            raise


def echo_epochs(log_path: str, offset: int, echo) -> int:
    """Print the epochs validated in the log since ``offset`` (whole lines only); the new offset."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    done = chunk.rfind(b"\n") + 1
    for epoch, score in epoch_lines(chunk[:done].decode("utf-8", errors="replace")):
        echo(f"  epoch {epoch}: valid score {score:.4f}")
    return offset + done


def run_one(spec, out_dir: str | None = None, retry_failed: bool = False, echo=print, launcher=None,
            threads: int = 1, timing_threads: int | None = None) -> dict | None:
    """Run ``spec`` unless it has finished (then return its record); ``None`` if skipped or failed. It trains with
    ``threads`` torch threads and times inference with ``timing_threads`` (default ``threads``; ``worker.py``).

    ``launcher(job_json, out_json, log_path) -> exit code`` runs the job (default: ``launch_subprocess``)."""
    out_dir = out_dir or default_out()
    path = record_path(out_dir, spec)
    now = state(out_dir, spec)
    if now == "finished":
        return load_record(path)
    if now == "changed":
        keys = changed_keys(load_record(path), spec)
        echo(f"  skipped: {path} was made with other settings ({', '.join(keys)}); never rerun over a finished "
             "run: restore the profile, or move the record away to rerun it")
        return None
    if now == "running" or (now == "failed" and not retry_failed):
        echo(f"  skipped ({now}; {'another process runs it' if now == 'running' else 'use --retry-failed'})")
        return None
    twin = twin_path(out_dir, spec)
    if twin is not None:
        echo(f"  not trained: the store has this run, same settings, as {os.path.relpath(twin, out_dir)}; "
             "its record is this run's")
        return adopt(out_dir, spec, twin)
    rel = os.path.splitext(spec.key)[0]
    paths = {
        "results_dir": os.path.abspath(os.path.join(out_dir, "runner")),
        "checkpoint_dir": checkpoint_dir(out_dir, spec),
    }
    log_path = os.path.join(out_dir, "logs", rel + ".log")
    for folder in (os.path.dirname(path), os.path.dirname(log_path), paths["checkpoint_dir"]):
        os.makedirs(folder, exist_ok=True)
    job_path, lock, failed = _sibling(path, ".job.json"), _sibling(path, ".lock"), _sibling(path, ".failed.json")
    with open(job_path, "w", encoding="utf-8") as f:
        json.dump({"spec": spec_dict(spec), "paths": paths, "threads": threads,
                   "timing_threads": timing_threads or threads}, f, indent=2)
    with open(lock, "w") as f:
        f.write(str(os.getpid()))
    start = time.time()
    try:
        code = (launcher or functools.partial(launch_subprocess, echo=echo))(job_path, path, log_path)
    finally:
        if os.path.isfile(lock):
            os.remove(lock)
    record = load_record(path) if code == 0 else None
    if record is not None:
        for stale in (failed, job_path):
            if os.path.isfile(stale):
                os.remove(stale)
        return record
    with open(log_path, encoding="utf-8", errors="replace") as f:
        tail = f.read().splitlines()[-25:]
    with open(failed, "w", encoding="utf-8") as f:
        json.dump({"spec": spec_dict(spec), "status": "failed", "exit_code": code, "log": log_path,
                   "seconds": time.time() - start, "log_tail": tail, **failure(tail)}, f, indent=2)
    echo(f"  FAILED (exit {code}); last line: {tail[-1] if tail else ''}; log: {log_path}")
    return None


def failure(log_tail) -> dict:
    """``{"error_type", "error"}`` of a run whose worker stopped on a known error (its last ``error: <type>: <message>``
    line, ``worker.ERROR_PREFIX``), e.g. ``NonFiniteLoss``; ``{}`` for a crash, a kill or an older log."""
    for line in reversed(log_tail):
        m = _ERROR_LINE.match(line)
        if m:
            return {"error_type": m.group(1), "error": m.group(2)}
    return {}


def load_failure(out_dir: str, spec) -> dict | None:
    """The ``.failed.json`` of ``spec`` in the store, or None."""
    return load_record(_sibling(record_path(out_dir, spec), ".failed.json"))


def run_all(specs, out_dir: str | None = None, retry_failed: bool = False, echo=print, launcher=None,
            threads: int = 1, on_finished=None, timing_threads: int | None = None) -> dict:
    """Run every spec in order, one at a time, those that an earlier, stopped attempt left half done (a resume
    checkpoint) first, so that started runs finish before new ones begin; returns counts by outcome. Progress on
    ``echo``. ``on_finished(spec)`` is called after each run this call finished (``bench run`` archives it there,
    ``archive.py``); an exception in it is reported and counted (``after_failed``), the run stays finished."""
    from recbole_famous.bench.worker import resume_point

    out_dir = out_dir or default_out()
    counts = {"finished_before": 0, "ran": 0, "failed": 0, "skipped": 0, "after_failed": 0}
    durations = []
    todo = [s for s in specs if state(out_dir, s) != "finished"]
    started = [s for s in todo if resume_point(checkpoint_dir(out_dir, s))]
    todo = started + [s for s in todo if s not in started]
    counts["finished_before"] = len(specs) - len(todo)
    echo(f"{len(specs)} runs planned, {counts['finished_before']} already finished, {len(todo)} to go "
         f"({len(started)} of them half done, first; records under {os.path.join(out_dir, 'runs')})")
    for i, spec in enumerate(todo, 1):
        eta = ""
        if durations:
            eta = f", about {sum(durations) / len(durations) * (len(todo) - i + 1) / 60:.0f} min left"
        echo(f"[{i}/{len(todo)}] {spec.label} on {spec.dataset}, seed {spec.seed} ({spec.profile}){eta}")
        if state(out_dir, spec) == "finished":  # another benchmark process finished it while this one worked
            counts["finished_before"] += 1
            echo("  already finished by another process since this benchmark started: not run again")
            continue
        start = time.time()
        record = run_one(spec, out_dir, retry_failed, echo, launcher, threads, timing_threads)
        if record is None:
            counts["failed" if state(out_dir, spec) == "failed" else "skipped"] += 1
            continue
        durations.append(time.time() - start)
        counts["ran"] += 1
        m, e = record["metrics"], record["efficiency"]
        echo(f"  done in {durations[-1] / 60:.1f} min: NDCG@10 {m.get('ndcg@10', float('nan')):.4f}, "
             f"HR@10 {m.get('hit@10', float('nan')):.4f}, {e.get('train_seconds_per_epoch') or 0:.0f} s/epoch, "
             f"{record['result']['epochs_run']} epochs")
        if on_finished is not None:
            try:
                on_finished(spec)
            except Exception as exc:  # noqa: BLE001 - the run's record is safe; say what did not happen
                counts["after_failed"] += 1
                echo(f"  after the run: {type(exc).__name__}: {exc} (the record is kept under {out_dir})")
    return counts
