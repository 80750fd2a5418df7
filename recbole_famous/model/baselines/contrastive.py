"""InfoNCE losses shared by CL4SRec, DuoRec and EMKD.

``nt_xent`` is the SimCLR-style loss CL4SRec (Xie et al., ICDE 2022, Eq. 4) and DuoRec (Qiu et al., WSDM 2022,
Eq. 11) use: for a batch of ``N`` pairs, each of the ``2N`` views has its partner as the positive and the other
``2N - 2`` views as negatives (the DuoRec authors' ``info_nce`` with ``mask_correlated_samples``).

``anchored_nce`` is the one-directional form EMKD (Du et al., SIGIR 2023) uses for its intra- and cross-network
contrastive terms (the ``ICL_crossentropy`` / ``CCL_crossentropy`` classes in github.com/hw-du/EMKD,
``trainers/bert.py``): anchor ``i`` against its positive, with the other rows of a negatives matrix as negatives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIMILARITIES = ("dot", "cos")


def _sim(a: torch.Tensor, b: torch.Tensor, sim: str) -> torch.Tensor:
    if sim == "cos":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    elif sim != "dot":
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {sim!r}")
    return a @ b.transpose(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 1.0, sim: str = "dot") -> torch.Tensor:
    """Symmetric InfoNCE over ``2N`` views ``(N, d)`` x 2: positive = the partner, negatives = the other 2N-2."""
    n = z1.size(0)
    z = torch.cat([z1, z2], dim=0)
    logits = _sim(z, z, sim) / tau
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, labels)


def anchored_nce(anchor, positive, negatives, tau: float = 1.0, sim: str = "cos") -> torch.Tensor:
    """InfoNCE of ``anchor[i]`` (N, d): positive ``positive[i]``, negatives ``negatives[j]`` for ``j != i``."""
    n = anchor.size(0)
    neg = _sim(anchor, negatives, sim)  # validates ``sim``
    pos = F.cosine_similarity(anchor, positive, dim=-1) if sim == "cos" else (anchor * positive).sum(-1)
    neg = neg.masked_fill(torch.eye(n, dtype=torch.bool, device=anchor.device), float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=anchor.device))
