"""Minimal stand-ins for RecBole's Config and Dataset, enough to build FamouSRec in a unit test."""
import torch

import recbole_famous  # noqa: F401  (RecBole compatibility fixes before anything from recbole)

BASE = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "device": torch.device("cpu")}


class FakeConfig(dict):
    """dict whose missing keys read as None, like RecBole's Config."""

    def __getitem__(self, key):
        return self.get(key)


class FakeDataset:
    def __init__(self, n_items):
        self.n_items = n_items

    def num(self, field):
        return self.n_items


def settings(n_experts=None, **overrides):
    """FamouSRec's settings for a router or a layer on its own: small, no dropout; ``n_experts`` mlp experts (the
    router reads only their number) unless ``experts`` is given."""
    from recbole_famous.model.famousrec_config import FamouSRecConfig
    small = {"hidden_size": 8, "inner_size": 16, "n_heads": 2, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0,
             "d_state": 4, "d_conv": 4, "expand": 2}
    if n_experts is not None:
        small["experts"] = ["mlp"] * n_experts
    return FamouSRecConfig(**{**small, **overrides})


def make_model(n_items=30, max_len=8, **overrides):
    from recbole_famous.model.famousrec import FamouSRec
    cfg = {"MAX_ITEM_LIST_LENGTH": max_len, "hidden_size": 16, "inner_size": 32, "n_heads": 2,
           "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, "d_state": 4, "expand": 2,
           "experts": ["attention", "gru", "mamba", "mlp"], **overrides}
    return FamouSRec(FakeConfig({**BASE, **cfg}), FakeDataset(n_items))


def make_batch(batch=5, max_len=8, n_items=30, seed=0, lengths=None):
    """Right-padded sequences (RecBole's layout) with one full-length row; returns a dict interaction."""
    g = torch.Generator().manual_seed(seed)
    if lengths is None:
        lengths = torch.randint(1, max_len + 1, (batch,), generator=g)
        lengths[0] = max_len
    lengths = torch.as_tensor(lengths)
    seq = torch.randint(1, n_items, (len(lengths), max_len), generator=g)
    seq = seq * (torch.arange(max_len)[None] < lengths[:, None])
    target = torch.randint(1, n_items, (len(lengths),), generator=g)
    return {"item_id_list": seq, "item_length": lengths, "item_id": target}
