"""DuoRec: contrastive regularisation with dropout (unsupervised) and same-target (supervised) positives.

Qiu, Huang, Yin, Wang. "Contrastive Learning for Representation Degeneration Problem in Sequential
Recommendation". WSDM 2022. Authors' code: github.com/RuihongQiu/DuoRec (``recbole/model/sequential_recommender/
duorec.py``; positives in ``recbole/data/dataset/sequential_dataset.py`` and ``.../sequential_dataloader.py``).

SASRec's encoder ``f`` and next-item CE over all items, plus (``contrast``, the authors' switch):

- ``un``:   lmd     * NT-Xent(f(s), f'(s))           f' = a second forward pass: a different dropout mask
- ``su``:   lmd_sem * NT-Xent(f(s), f(s+))            s+ = a training sequence with the same next item as s
- ``us``:   both of the above
- ``us_x``: lmd_sem * NT-Xent(f'(s), f(s+))           the authors' default (their run script), DuoRec Eq. 11

``s+`` is drawn uniformly among the training sequences whose target is the anchor's, excluding sequences
identical to the anchor; when there is none the anchor itself is used (the authors' fallback).
``SameTargetSampler`` indexes the training sequences once (sorted by target, then by a hash of the sequence),
so each batch draws its positives with a few ``searchsorted`` calls: no per-sample Python loop and no
quadratic start-up (RecBole's FEARec builds its same-target lists with one ``np.where`` per training row).
"""
from __future__ import annotations

import torch
from torch import nn
from recbole.model.sequential_recommender import SASRec

from recbole_famous.errors import UsageError
from recbole_famous.model.baselines.cl4srec import check_ce_and_sim
from recbole_famous.model.baselines.contrastive import nt_xent

CONTRAST_MODES = ("un", "su", "us", "us_x")
_PRIMES = (2147483647, 2147483629)


class SameTargetSampler(nn.Module):
    """Draws, for each anchor, another training sequence with the same target item (torch ops only).

    Index: row keys ``target * U + rank(hash(sequence))`` sorted once; the rows of one target form a
    contiguous block, and inside it the rows identical to the anchor form a sub-block, found by binary search.
    """

    def __init__(self, seqs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        weights = torch.stack([torch.randint(1, p, (seqs.size(1),), generator=g) for p in _PRIMES])
        self.register_buffer("hash_weights", weights, persistent=False)
        h = self.seq_hash(seqs)
        uniq = torch.unique(h)  # sorted
        keys = targets.long() * uniq.numel() + torch.searchsorted(uniq, h)
        keys, order = keys.sort()
        for name, value in (("uniq_hash", uniq), ("keys", keys), ("seqs", seqs[order]), ("lengths", lengths[order])):
            self.register_buffer(name, value, persistent=False)

    def seq_hash(self, seqs: torch.Tensor) -> torch.Tensor:
        """Two polynomial hashes modulo 31-bit primes, combined into one int64 per row (padding contributes 0)."""
        p1, p2 = _PRIMES
        h1 = ((seqs.long() * self.hash_weights[0]) % p1).sum(1) % p1
        h2 = ((seqs.long() * self.hash_weights[1]) % p2).sum(1) % p2
        return h1 * p2 + h2

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor):
        """Positives ``(seq+, len+)`` for anchors ``seq`` (B, L) whose next items are ``targets`` (B,).

        ``L`` may be less than the stored width (a trimmed batch): the anchors are padded back to it, and the
        positives are trimmed to ``max(L, their longest history)``."""
        width = seq.size(1)
        seq = torch.nn.functional.pad(seq, (0, self.seqs.size(1) - width))
        n_unique, n_rows = self.uniq_hash.numel(), self.keys.numel()
        h = self.seq_hash(seq)
        rank = torch.searchsorted(self.uniq_hash, h).clamp(max=n_unique - 1)
        known = self.uniq_hash[rank] == h
        base = targets.long() * n_unique
        lo = torch.searchsorted(self.keys, base)
        hi = torch.searchsorted(self.keys, base + n_unique)
        own = base + rank
        own_lo = torch.where(known, torch.searchsorted(self.keys, own), hi)
        own_n = torch.where(known, torch.searchsorted(self.keys, own, right=True) - own_lo, torch.zeros_like(lo))
        available = hi - lo - own_n
        pick = lo + (torch.rand(lo.shape, device=lo.device) * available.clamp(min=1)).long().clamp(
            max=(available - 1).clamp(min=0))
        pick = torch.where(pick >= own_lo, pick + own_n, pick).clamp(max=n_rows - 1)
        found = available > 0
        pos_seq = torch.where(found.unsqueeze(1), self.seqs[pick], seq)
        pos_len = torch.where(found, self.lengths[pick], lengths)
        return pos_seq[:, :max(width, int(pos_len.max()) if pos_len.numel() else 0)], pos_len


class DuoRec(SASRec):
    # Exact encoder on trimmed batches (the same-target positives keep their own length), but NT-Xent takes its
    # negatives from the batch: length-grouped batches give each sequence negatives of its own length.
    length_batches = "allowed"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_ce_and_sim("DuoRec", config)
        if config["contrast"] not in CONTRAST_MODES:
            raise UsageError(f"DuoRec: contrast must be one of {list(CONTRAST_MODES)}, got {config['contrast']!r}")
        self.contrast, self.lmd, self.lmd_sem = config["contrast"], config["lmd"], config["lmd_sem"]
        self.tau, self.sim = config["tau"], config["sim"]
        feat = dataset.inter_feat
        self.same_target = SameTargetSampler(feat[self.ITEM_SEQ], feat[self.ITEM_SEQ_LEN], feat[self.ITEM_ID],
                                             seed=config["seed"])

    def calculate_loss(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        seq_output = self.forward(item_seq, item_seq_len)
        loss = self.loss_fct(seq_output @ self.item_embedding.weight.t(), target)
        nce = lambda a, b: nt_xent(a, b, self.tau, self.sim)  # noqa: E731
        if self.contrast in ("un", "us", "us_x"):
            dropout_view = self.forward(item_seq, item_seq_len)
        if self.contrast in ("su", "us", "us_x"):
            same_target_view = self.forward(*self.same_target(item_seq, item_seq_len, target))
        if self.contrast in ("un", "us"):
            loss = loss + self.lmd * nce(seq_output, dropout_view)
        if self.contrast in ("su", "us"):
            loss = loss + self.lmd_sem * nce(seq_output, same_target_view)
        if self.contrast == "us_x":
            loss = loss + self.lmd_sem * nce(dropout_view, same_target_view)
        return loss
