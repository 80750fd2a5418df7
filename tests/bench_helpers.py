"""Test helpers for the benchmark package: run a job in this process, list finished records."""

from __future__ import annotations

import json
import os

from recbole_famous.bench import runs, worker


def run_in_process(job_path: str, out_path: str, log_path: str) -> int:
    """A ``runs.run_one`` launcher that runs the job in this process (no per-run peak memory isolation)."""
    import torch

    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    threads = torch.get_num_threads()
    try:
        record = worker.execute(job)
    finally:
        torch.set_num_threads(threads)
    with open(out_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)
    os.replace(out_path + ".tmp", out_path)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"finished in process: {out_path}\n")
    return 0


def finished_records(out_dir: str, profile: str | None = None) -> list:
    """Every finished run record under ``out_dir`` (optionally of one profile)."""
    root = os.path.join(out_dir, "runs", profile) if profile else os.path.join(out_dir, "runs")
    records = []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".json") and not name.endswith((".failed.json", ".job.json", ".tmp")):
                record = runs.load_record(os.path.join(folder, name))
                if record and record.get("status") == "finished":
                    records.append(record)
    return records


def bench_cli(argv) -> int:
    """``run_recbole_famous.py bench ARGV`` in this process; its exit code."""
    from recbole_famous.cli import main

    return main(["bench", *argv])
