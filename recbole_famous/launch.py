"""Training on several processes: starts them (``torch.multiprocessing``, spawn), one ``runner.run`` each, and
returns rank 0's result. CLI: ``run_recbole_famous.py --nproc=N [--world_size=W --ip=HOST --port=P
--group_offset=K]``.

Each process joins the process group in its Config (``recbole_famous.distributed``: gloo on CPU, NCCL on GPUs),
so this module only lays the processes out, forwards SIGINT / SIGTERM to them, and relays what they report: the
result, or the one error a user sees (``UsageError``, ``NonFiniteLoss``, ``TrainingInterrupted`` with its resume
hint). Above the runner: nothing below imports it.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading

import torch

from recbole_famous import checkpoint, pipeline, runner
from recbole_famous.errors import NonFiniteLoss, TrainingInterrupted, UsageError


def free_port(ip: str = "localhost") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def leave_group(finished: bool) -> None:
    """End this process's part in the process group, in an order that cannot abort the process at exit.

    A finished run leaves its DistributedDataParallel wrapper in a reference cycle; the wrapper's reducer holds
    the gloo process group and its last pending work. Freed only at interpreter shutdown, those C++ objects
    tear down their threads while Python is half gone, and the process dies of SIGABRT ("terminate called
    without an active exception") after a run that succeeded. So: collect the cycle now, wait for every rank
    (``finished``; skipped after an error, where a rank may be gone), then destroy the group.
    """
    gc.collect()
    if not torch.distributed.is_initialized():
        return
    if finished:
        try:
            torch.distributed.barrier()
        except RuntimeError:  # a rank that failed has left already: nothing to wait for
            pass
    torch.distributed.destroy_process_group()
    gc.collect()


def _worker(local_rank, jobs, saved, threads, queue):
    if threads:
        torch.set_num_threads(threads)
    finished = False
    try:
        for index, (model, dataset, config_files, overrides, resume, run_id) in enumerate(jobs):
            result = runner.run(model, dataset, config_files, {**overrides, "local_rank": local_rank}, saved=saved,
                                resume=resume, run_id=run_id)
            gc.collect()  # this run's DDP wrapper (see leave_group) before the next run makes its own
            if local_rank == 0 and not overrides.get("offset"):
                queue.put(("result", index, result))
        finished = True
    except UsageError as exc:
        queue.put(("usage", str(exc)))
    except NonFiniteLoss as exc:
        queue.put(("nonfinite", str(exc)))
    except TrainingInterrupted as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        queue.put(("interrupted", local_rank, exc.signum, exc.epochs_done, exc.checkpoint, exc.best_epoch))
    except KeyboardInterrupt:
        queue.put(("interrupted", local_rank, signal.SIGINT, None, None, None))
    finally:
        leave_group(finished)


def run(model=None, dataset=None, config_files=None, overrides=None, *, nproc=2, world_size=-1, ip="localhost",
        port=None, group_offset=0, saved=True, resume=None, threads=None) -> dict:
    """Train with ``nproc`` processes on this machine (``world_size`` in all, this machine's first rank
    ``group_offset``); returns the result of rank 0 (on the machine with ``group_offset`` 0; ``None`` elsewhere).

    On CPU each process gets ``threads`` torch threads (default: the cores divided by ``nproc``).
    """
    return run_many([(model, dataset, config_files, overrides, resume)], nproc=nproc, world_size=world_size, ip=ip,
                    port=port, group_offset=group_offset, saved=saved, threads=threads)[0]


def run_many(jobs, *, nproc=2, world_size=-1, ip="localhost", port=None, group_offset=0, saved=True,
             threads=None) -> list:
    """Several runs one after the other in the same processes and process group (one start-up for all):
    ``jobs`` is a list of ``(model, dataset, config_files, overrides, resume)``; returns rank 0's results."""
    import torch.multiprocessing as mp

    nproc = int(nproc)
    world_size = nproc if world_size in (None, -1) else int(world_size)
    if nproc < 1 or world_size < nproc or group_offset + nproc > world_size:
        raise UsageError(f"nproc={nproc}, world_size={world_size}, group_offset={group_offset} do not fit together")
    if port is None:
        if world_size != nproc:
            raise UsageError("a run over several machines needs --port (the same on every machine) and --ip")
        port = free_port(ip)
    layout = {"nproc": nproc, "world_size": world_size, "ip": ip, "port": int(port), "offset": int(group_offset)}
    specs = []
    for model, dataset, config_files, overrides, resume in jobs:
        if resume and not (model and dataset):  # name the run after the checkpoint's model and dataset
            meta = checkpoint.meta(checkpoint.load(checkpoint.companion_paths(resume)[0]))
            model, dataset = model or meta["model"], dataset or meta["dataset"]
        run_id = runner.make_run_id(model or pipeline.default_model(), dataset or pipeline.DEFAULT_DATASET)
        specs.append((model, dataset, list(config_files or []), {**dict(overrides or {}), **layout}, resume,
                      f"{run_id}-{len(specs)}x{world_size}"))
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // nproc)
    queue = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(_worker, args=(specs, saved, threads, queue), nprocs=nproc, join=False,
                                 start_method="spawn")

    def forward(signum, frame):  # a signal to the launcher reaches every process
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in handlers:
            signal.signal(s, forward)
    try:
        while not context.join():
            pass
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    messages = []
    while not queue.empty():
        messages.append(queue.get())
    for kind, *rest in messages:
        if kind == "usage":
            raise UsageError(rest[0])
        if kind == "nonfinite":
            raise NonFiniteLoss(rest[0])
    interrupted = [m for m in messages if m[0] == "interrupted"]
    if interrupted:
        first = min(interrupted, key=lambda m: m[1])  # rank 0's account when it has one
        raise TrainingInterrupted(*first[2:])
    results = [None] * len(specs)
    for message in messages:
        if message[0] == "result":
            results[message[1]] = message[2]
    return results
