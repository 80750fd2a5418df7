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

The launcher that starts the processes (one ``runner.run`` each) is ``recbole_famous.launch``, above the runner;
this module sits below the pipeline steps and knows nothing of runs.

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

import torch

from recbole_famous import compat


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
    # (a later run in the same processes, see launch.run_many, reuses the group)
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
    """Around ``data_preparation``: RecBole's dataloaders get ``ShardSampler`` instead of DistributedSampler
    (compat fix 12)."""
    if config["single_spec"]:
        yield
        return
    with compat.distributed_sampler(ShardSampler):  # compat fix 12
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
