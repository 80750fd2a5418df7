"""Training on histories trimmed to their real length: a length-split encoder, and length-grouped batches.

RecBole turns every prefix of a user's history into a training sample and right-pads its ``item_id_list`` to
``MAX_ITEM_LIST_LENGTH``; ``item_length`` holds the real length. Most samples are short, and a random batch
almost always holds one long history, so a random batch trimmed to its longest history is barely shorter. Two
ways around it, both resting on right padding: a causal encoder never looks past a history's last real position
and reads out at ``item_length - 1``, so trimming the padding changes nothing for that sample.

``length_split`` (``split_class``, the default ``auto``: 8 parts for the models in ``SPLIT_MODELS``): RecBole's own
batches; the model's ``forward(item_seq, item_seq_len)`` runs on length-sorted parts of each batch, each trimmed,
and the outputs go back in the batch's order. The batches and every loss term are RecBole's.

``length_batches`` (``regroup``, default ``false``): a training loader whose batches hold samples of similar length.
Every epoch it:

1. orders the training samples by real length, ties in a random order (one draw per sample);
2. cuts that order into consecutive batches of ``train_batch_size`` (the one partial batch, when the size does
   not divide the sample count, goes to a random place in the order);
3. shuffles the batches;
4. trims each batch's list fields (``*_list``) to its longest real history.

Every draw comes from the dataloader's own ``generator`` (seeded with ``seed``; the trainer's checkpoints save
and restore its state), so the same seed gives the same batches and a resumed run continues with the batches the
uninterrupted one would have had. In the distributed mode every process computes the same global batches and
takes its consecutive share of each (as ``recbole_famous.distributed.ShardSampler`` does for RecBole's order);
each process trims its share to that share's longest history.

Which models get it: the config key ``length_batches``:

* ``auto``: on for the models that declare ``"on"`` below, RecBole's own batches for the others;
* ``true``: on for any model that declares ``"on"`` or ``"allowed"``; a one-line error for the others;
* ``false`` (the default: grouped batches slow the first epochs' learning, docs/speed.md): RecBole's own batches.

A model declares it with a class attribute of its own (not inherited) ``length_batches = "on" | "allowed"``;
RecBole's built-ins are declared in ``BUILTIN`` here. ``"on"``: the loss of every sample depends on that sample
only, and its forward pass gives the same result on a trimmed batch (right padding: a causal encoder never looks
past the last real position, and its readout is at ``item_length - 1``). ``"allowed"``: the forward pass is as
exact, but some loss term depends on which samples share a batch (in-batch negatives, batch statistics, a mean
over the batch's masked tokens), so grouping by length changes that term's batches; or grouping gains nothing.
What is exact is tested in ``tests/test_length_batches.py``. Dropout draws its masks for the tensor shape it is
given, so with dropout on a trimmed batch draws different (equally distributed) masks.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import torch

from recbole_famous.errors import UsageError

KEY = "length_batches"
DECLARATIONS = ("on", "allowed")
# RecBole's built-in models, declared here (the plugin's models declare themselves).
BUILTIN = {
    "SASRec": "on",  # causal self-attention, learned positions 0..L-1, readout at item_length - 1
    "GRU4Rec": "on",  # a GRU left to right, readout at item_length - 1
    # BERT4Rec: bidirectional, but padding is masked out of the attention and the masked positions lie inside the
    # real history, so each masked token's loss is exact; the batch loss is the mean over the batch's masked
    # tokens, which weighs a token by 1 / (masked tokens in its batch): grouping by length reweights the tokens.
    "BERT4Rec": "allowed",
}
# Batch transforms that work on trimmed batches (RecBole's mask_itemseq draws per real item, whatever the width).
TRIMMABLE_TRANSFORMS = (None, "mask_itemseq")


def declared(model_class) -> str | None:
    """The model class's own declaration (``"on"``, ``"allowed"``), or None."""
    own = model_class.__dict__.get(KEY)
    if own is None and model_class.__module__.startswith("recbole."):
        own = BUILTIN.get(model_class.__name__)
    if own is not None and own not in DECLARATIONS:
        raise ValueError(f"{model_class.__name__}.{KEY} must be one of {DECLARATIONS}, got {own!r}")
    return own


def setting(config):
    """The key's value: ``"auto"``, True or False (yaml reads on/off/yes/no as booleans too)."""
    value = config[KEY] if KEY in config else "auto"
    if isinstance(value, str) and value.lower() in ("auto", "true", "false", "on", "off"):
        value = {"auto": "auto", "true": True, "on": True, "false": False, "off": False}[value.lower()]
    if value not in ("auto", True, False):
        raise UsageError(f"{KEY} must be auto, true or false, got {value!r}")
    return value


def wanted(config) -> bool:
    """Whether this run trains on length-grouped batches (``UsageError`` when asked for where it is not exact)."""
    from recbole.utils import ModelType

    value = setting(config)
    if value is False:
        return False
    name = config["model"]
    reason = None
    decl = declared(config.model_class)
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        reason = f"{name} is not a sequential model"
    elif config["transform"] not in TRIMMABLE_TRANSFORMS:
        reason = f"the batch transform {config['transform']!r} assumes full-length histories"
    elif decl is None:
        reason = f"{name} does not declare that it gives the same results on trimmed batches"
    if reason is None:
        return value is True or decl == "on"
    if value is True:
        raise UsageError(f"{KEY}: true is not available here: {reason}; use {KEY}: false (RecBole's batches)")
    return False


def epoch_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None, shuffle: bool = True):
    """One epoch of global batches: a list of index tensors, consecutive in (length, random tie) order, shuffled.

    Without ``shuffle``: the stable length order, the partial batch last, batches in order (no draws).
    """
    n = int(lengths.numel())
    if shuffle:
        ties = torch.rand(n, generator=generator, dtype=torch.float64)  # in [0, 1): never crosses a length
        order = torch.argsort(lengths.double() + ties)
    else:
        order = torch.argsort(lengths, stable=True)
    full, tail = divmod(n, batch_size)
    sizes = [batch_size] * full
    if tail:
        at = int(torch.randint(full + 1, (1,), generator=generator)) if shuffle else full
        sizes.insert(at, tail)
    batches = list(torch.split(order, sizes))
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def share(batch: torch.Tensor, world: int, rank: int) -> torch.Tensor:
    """Process ``rank``'s consecutive part of a global batch (as even as possible; a process whose part would be
    empty repeats one index, since every process must take the same number of steps)."""
    if world == 1:
        return batch
    base, extra = divmod(int(batch.numel()), world)
    first, count = rank * base + min(rank, extra), base + (1 if rank < extra else 0)
    part = batch[first:first + count]
    return part if part.numel() else batch[rank % batch.numel()].view(1)


def trim(interaction, fields, length_field: str):
    """Cut the ``fields`` (B, L) of an Interaction to the batch's longest real history (in place; returned)."""
    from recbole.data.interaction import Interaction

    longest = max(int(interaction[length_field].max()), 1)
    cut = {f: interaction[f][:, :longest] for f in fields if f in interaction and interaction[f].dim() >= 2
           and interaction[f].size(1) > longest}
    if cut:
        interaction.update(Interaction(cut))
    return interaction


def train_loader_class():
    from recbole.data.dataloader import TrainDataLoader

    class LengthGroupedTrainDataLoader(TrainDataLoader):
        """RecBole's TrainDataLoader with the batches of ``epoch_batches``, each trimmed (``trim``); batches are
        collated in the main process (RecBole's ``worker`` setting is not used)."""

        def __init__(self, config, dataset, sampler, shuffle=True):
            super().__init__(config, dataset, sampler, shuffle=shuffle)
            self.length_field = config["ITEM_LIST_LENGTH_FIELD"]
            self.list_fields = [f for f in dataset.inter_feat.columns if f.endswith(config["LIST_SUFFIX"])]
            self.lengths = torch.as_tensor(np.asarray(dataset.inter_feat[self.length_field])).long()
            if config["single_spec"]:
                self.world, self.rank = 1, 0
            else:
                self.world, self.rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
            self.global_step = self.step * self.world  # RecBole divides the step by the world size

        def collate_fn(self, index):
            data = self._dataset[np.array(index)]
            data = trim(data, self.list_fields, self.length_field)
            return self._neg_sampling(self.transform(self._dataset, data))

        def __iter__(self):
            for batch in epoch_batches(self.lengths, self.global_step, self.generator, bool(self.shuffle)):
                yield self.collate_fn(share(batch, self.world, self.rank).tolist())

        def __len__(self):
            return math.ceil(self.sample_size / self.global_step)

    return LengthGroupedTrainDataLoader


def regroup(config, train_data):
    """``train_data`` itself, or a length-grouped loader over the same training samples when ``wanted``."""
    from recbole.data.dataloader import TrainDataLoader

    if not wanted(config):
        return train_data
    if type(train_data) is not TrainDataLoader:
        if setting(config) is True:
            raise UsageError(f"{KEY}: true needs RecBole's TrainDataLoader, this run uses {type(train_data).__name__}")
        return train_data
    loader = train_loader_class()(config, train_data._dataset, train_data._sampler, shuffle=train_data.shuffle)
    logging.getLogger().info(f"training batches: length-grouped, trimmed to their longest history ({KEY})")
    return loader


# ---- length-split encoding inside RecBole's own batches -------------------------------------------------------
SPLIT_KEY = "length_split"
SPLIT_PARTS = 8  # what ``length_split: auto`` uses
# Models whose ``forward(item_seq, item_seq_len)`` encodes each sample on its own and returns (B, ...), exact on a
# trimmed batch (see ``BUILTIN`` and the plugin's declarations): only the encoder is split, so every loss term,
# in-batch negatives and batch statistics included, sees the batch it always saw.
SPLIT_MODELS = frozenset({"SASRec", "GRU4Rec", "Mamba4Rec", "CL4SRec", "DuoRec", "Crocodile", "EMKD"})


def split_setting(config) -> int:
    """How many length-sorted parts each batch is encoded in (0 or 1: not split)."""
    value = config[SPLIT_KEY] if SPLIT_KEY in config else 0
    if isinstance(value, str) and value.lower() == "auto":
        splittable = config["model"] in SPLIT_MODELS and config.model_class.__module__.split(".")[0] in (
            "recbole", "recbole_famous") and config["transform"] in TRIMMABLE_TRANSFORMS
        return SPLIT_PARTS if splittable and not wanted(config) else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{SPLIT_KEY} must be auto or a number of parts >= 0, got {value!r}")
    if value > 1 and config["model"] not in SPLIT_MODELS:
        raise UsageError(f"{SPLIT_KEY}: {config['model']} is not one of the models whose encoder can be split "
                         f"({', '.join(sorted(SPLIT_MODELS))}); use {SPLIT_KEY}: 0")
    return value


def split_forward(forward, parts: int):
    """``forward(item_seq, item_seq_len)`` run on ``parts`` length-sorted parts of the batch, each trimmed to its
    longest history, the outputs put back in the batch's order (the same result, up to float rounding)."""

    def split(item_seq, item_seq_len, *args, **kwargs):
        if parts <= 1 or item_seq.size(0) < 2:
            return forward(item_seq, item_seq_len, *args, **kwargs)
        order = torch.argsort(item_seq_len, stable=True)
        outs = []
        for idx in order.tensor_split(min(parts, item_seq.size(0))):
            width = max(int(item_seq_len[idx].max()), 1)
            outs.append(forward(item_seq[idx, :width], item_seq_len[idx], *args, **kwargs))
        return torch.cat(outs)[torch.argsort(order)]

    split.parts = parts
    return split


class LengthSplit:
    """Mixin of a model class whose ``forward(item_seq, item_seq_len)`` runs on ``split_parts`` length-sorted parts
    of each batch (``split_forward``). RecBole's models call ``self.forward`` from ``calculate_loss`` and
    ``full_sort_predict``, so the split reaches every use of the encoder; ``unsplit_forward`` is the model's own
    forward on the whole batch (what a forward hook that must see the batch once needs)."""

    split_parts = 1

    def forward(self, item_seq, item_seq_len, *args, **kwargs):
        return split_forward(super().forward, self.split_parts)(item_seq, item_seq_len, *args, **kwargs)

    def unsplit_forward(self, *args, **kwargs):
        return super().forward(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def split_class(model_class, parts: int):
    """``model_class`` with its encoder on ``parts`` length-sorted parts of each batch: a subclass (same name,
    same state dict) with the ``LengthSplit`` mixin first; ``model_class`` itself for ``parts`` <= 1."""
    if parts <= 1:
        return model_class
    return type(model_class.__name__, (LengthSplit, model_class),
                {"split_parts": parts, "__module__": model_class.__module__, "__qualname__": model_class.__qualname__,
                 "__doc__": model_class.__doc__})


def split_model_class(config, model_class):
    """``(the class to build, parts)``: ``split_class(model_class, parts)`` when ``length_split`` asks for parts."""
    parts = split_setting(config)
    if parts > 1:
        logging.getLogger().info(f"the encoder runs on {parts} length-sorted parts of each batch ({SPLIT_KEY})")
    return split_class(model_class, parts), parts