"""Training on several processes: RecBole's distributed mode (``torch.distributed``), on GPUs or on CPUs.

RecBole 1.2.1 already has the settings (``nproc``, ``world_size``, ``ip``, ``port``, ``offset``) and the pieces
(DistributedDataParallel, a DistributedSampler per dataloader, metrics reduced over processes), but hard-codes
NCCL and CUDA in ``Config._init_device``. This module adds what the plugin needs around it:

* ``init_device(config)``: the hook our ``Config._init_device`` calls first. With ``local_rank`` set and no GPU to
  use (``use_gpu: False``, an empty ``gpu_id`` or no CUDA) it joins the process group with the **gloo** backend on
  CPU; otherwise RecBole's own NCCL / CUDA set-up runs unchanged.
* ``sharding(config)`` + ``attach(config, train_data)``: RecBole's dataloaders use torch's DistributedSampler,
  which shuffles differently from a single-process run and pads the evaluation users with duplicates. Ours
  (``ShardSampler``) splits **each global batch** of the single-process order between the processes (training),
  and gives each process every ``world_size``-th user with no duplicates (evaluation). So one process with
  ``train_batch_size: B`` and W processes (B/W users each per step, gradients averaged by DDP) take the same
  optimisation steps on the same users, up to floating-point summation order, the split of the epoch's last,
  partial batch, and per-process dropout randomness.
* ``run(...)``: the launcher (``torch.multiprocessing``, spawn), one ``runner.run`` per process, rank 0's result
  returned. CLI: ``run_recbole_famous.py --nproc=N [--world_size=W --ip=HOST --port=P --group_offset=K]``.

Losses computed over the batch are computed over each process's share of it: FamouSRec's alignment loss
(Eq. 14) takes its in-batch negatives from the B/W users of the same process, and its load-balance loss (Eq. 16)
pushes each process's average gate distribution (over B/W users) towards uniform; the gradients of these
per-process losses are then averaged. Cross-entropy over all items (L_rec) and L_spe are per-user averages, so
their averaged gradients equal the single-process ones (up to the last-batch split).

Multi-GPU (one machine, 4 GPUs): ``python run_recbole_famous.py --model=FamouSRec --dataset=Arts --nproc=4
--gpu_id=0,1,2,3``; two machines with 4 GPUs each: on each, ``--nproc=4 --world_size=8 --ip=<first machine>
--port=5678``, with ``--group_offset=0`` on the first and ``--group_offset=4`` on the second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading

import torch

from recbole_famous.errors import UsageError


# ---- the Config hook ----------------------------------------------------------------------------
def init_device(config) -> bool:
    """Set up a distributed process on CPU (gloo). Returns False (nothing done) for single-process runs and
    the first GPU run of a process, which RecBole's own ``_init_device`` handles (NCCL)."""
    d = config.final_config_dict
    if "local_rank" not in d:
        return False
    gpu_id = d["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id  # as RecBole does, before anything asks CUDA
    gpu = bool(d.get("use_gpu", True) and gpu_id and torch.cuda.is_available())
    if gpu and not torch.distributed.is_initialized():
        return False  # RecBole's NCCL set-up
    d["gpu_id"] = gpu_id
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend="gloo", rank=int(d["local_rank"]) + int(d.get("offset") or 0), world_size=int(d["world_size"]),
            init_method=f"tcp://{d['ip']}:{d['port']}",
        )
    # (a later run in the same processes, see run_many, reuses the group)
    if gpu:
        d["device"] = torch.device("cuda", d["local_rank"])
        torch.cuda.set_device(d["local_rank"])
    else:
        d["device"] = torch.device("cpu")
    d["single_spec"] = False
    if d["local_rank"] != 0:
        d["state"] = "error"
        d["show_progress"] = False
        d["verbose"] = False
    return True


# ---- samplers -------------------------------------------------------------------------------------
class ShardSampler(torch.utils.data.Sampler):
    """Replaces torch's DistributedSampler inside RecBole's dataloaders (same constructor).

    Until ``attach`` marks it as the training sampler it shards evaluation data: every ``world_size``-th index,
    no padding (processes may get one user more or less; RecBole's evaluation has no per-batch collective).
    Training (``aligned``): each global batch of ``step * world_size`` indices of the single-process order
    (the dataloader's own generator, drawn as torch's RandomSampler draws it) is cut into ``world_size``
    consecutive parts, part r to process r; the epoch's last, partial batch is split as evenly as possible, and a
    process whose part would be empty repeats one index (every process must take the same number of steps).
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        self.n = len(dataset)
        self.world = num_replicas or torch.distributed.get_world_size()
        self.rank = torch.distributed.get_rank() if rank is None else rank
        self.shuffle = shuffle
        self.aligned = False
        self.generator = None
        self.step = None

    def set_epoch(self, epoch: int) -> None:  # RecBole calls it; the order comes from the generator
        pass

    def _last_part(self, length: int) -> tuple[int, int]:
        base, extra = divmod(length, self.world)
        return self.rank * base + min(self.rank, extra), base + (1 if self.rank < extra else 0)

    def _indices(self) -> list[int]:
        if not self.aligned:
            return list(range(self.rank, self.n, self.world))
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).tolist()
            # torch's RandomSampler draws one more permutation when an epoch ends (its num_samples % n tail):
            # draw it too, so the next epoch's order is the single-process run's.
            torch.randperm(self.n, generator=self.generator)
        else:
            order = list(range(self.n))
        size = self.step * self.world
        out = []
        for start in range(0, self.n, size):
            chunk = order[start:start + size]
            if len(chunk) == size:
                out += chunk[self.rank * self.step:(self.rank + 1) * self.step]
            else:
                first, count = self._last_part(len(chunk))
                out += chunk[first:first + count] or [chunk[self.rank % len(chunk)]]
        return out

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        if not self.aligned:
            return len(range(self.rank, self.n, self.world))
        size = self.step * self.world
        tail = self.n % size
        return (self.n // size) * self.step + (max(1, self._last_part(tail)[1]) if tail else 0)


@contextlib.contextmanager
def sharding(config):
    """Around ``data_preparation``: RecBole's dataloaders get ``ShardSampler`` instead of DistributedSampler."""
    if config["single_spec"]:
        yield
        return
    from recbole_famous import compat

    with compat.patched(torch.utils.data.distributed, "DistributedSampler", ShardSampler):
        yield


def attach(config, train_data) -> None:
    """Make the training dataloader's sampler follow the single-process batches (see ``ShardSampler``)."""
    if config["single_spec"]:
        return
    sampler = train_data.sampler
    if isinstance(sampler, ShardSampler):
        sampler.aligned = True
        sampler.generator = train_data.generator
        sampler.step = train_data.batch_size
        sampler.shuffle = bool(train_data.shuffle)


# ---- the launcher ---------------------------------------------------------------------------------
def free_port(ip: str = "localhost") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _worker(local_rank, jobs, saved, threads, queue):
    from recbole_famous import runner
    from recbole_famous.trainer import NonFiniteLoss, TrainingInterrupted

    if threads:
        torch.set_num_threads(threads)
    try:
        for index, (model, dataset, config_files, overrides, resume, run_id) in enumerate(jobs):
            result = runner.run(model, dataset, config_files, {**overrides, "local_rank": local_rank}, saved=saved,
                                resume=resume, run_id=run_id)
            if local_rank == 0 and not overrides.get("offset"):
                queue.put(("result", index, result))
    except UsageError as exc:
        queue.put(("usage", str(exc)))
    except NonFiniteLoss as exc:
        queue.put(("nonfinite", str(exc)))
    except TrainingInterrupted as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        queue.put(("interrupted", exc.signum, str(exc), local_rank))
    except KeyboardInterrupt:
        queue.put(("interrupted", signal.SIGINT, "interrupted", local_rank))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


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

    from recbole_famous import runner
    from recbole_famous.trainer import NonFiniteLoss, TrainingInterrupted

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
            from recbole_famous import checkpoint

            meta = checkpoint.meta(checkpoint.load(checkpoint.companion_paths(resume)[0]))
            model, dataset = model or meta["model"], dataset or meta["dataset"]
        run_id = runner.make_run_id(model or runner.default_model(), dataset or runner.DEFAULT_DATASET)
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
        first = min(interrupted, key=lambda m: m[3])
        exc = TrainingInterrupted(first[1])
        exc.detail = first[2]
        raise exc
    results = [None] * len(specs)
    for message in messages:
        if message[0] == "result":
            results[message[1]] = message[2]
    return results
