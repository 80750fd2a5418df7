"""EMKD: an ensemble of parallel sequence encoders trained with contrastive knowledge distillation.

Du, Yuan, Zhao, Zhuang, Liu, Zhao, Liu, Sheng. "Ensemble Modeling with Contrastive Knowledge Distillation for
Sequential Recommendation". SIGIR 2023. Authors' code: github.com/hw-du/EMKD (``models/bert.py``,
``trainers/bert.py``, defaults in ``options.py`` / ``templates.py``).

The authors' networks: ``N`` parallel Transformers, each with its own embeddings; the recommendation sums (here:
averages, the same ranking) the networks' item scores. Training (``BERTTrainer.calculate_loss``):

    L = sum_n CE_n + mu * sum_{a>b} KD(a, b) + lambda * (ICL + CCL)

- KD(a, b): symmetric KL between the networks' softened item distributions, ``(KL(p_b || p_a) + KL(p_a || p_b)) / 2``
  with ``p = softmax(logits / tau)`` and the target side detached (``compute_kl_div``);
- ICL (intra-network): network n's representation of a sequence against its representation of a masked view,
  the other sequences of the batch as negatives; CCL (cross-network): network n's representation against
  network u's representation of a masked view, network u's other sequences as negatives (cosine, ``tau``).

``mu`` is ``kd_weight`` (authors' default 0.001), ``lambda`` is ``cl_weight`` (0.01), ``tau`` is shared by KD and
the contrastive terms, as in the authors' code (0.3 on their Amazon datasets).

Adapted to this project's protocol (next-item CE over all items on SASRec-style causal encoders, RecBole's
data), so these differ from the authors' code, which trains bidirectional Transformers with a cloze task:
- the CE and KD terms use the next-item logits of the unmasked sequence;
- a masked view replaces each item with a learned mask token with probability ``mask_ratio`` (the authors'
  views are cloze-masked sequences, ``bert_mask_prob`` 0.15); there are ``n_views`` of them (authors: 8),
  the contrastive terms averaged over them;
- representations are the last-position states (authors: the whole flattened sequence); the contrastive terms
  are the authors' cross-entropy variant (``ICL_crossentropy`` / ``CCL_crossentropy``);
- each network scores items with its own tied item embeddings (authors: a linear classifier per network);
- the attribute-prediction loss is dropped: the datasets here have no item attributes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.sequential_recommender import SASRec

from recbole_famous.errors import UsageError
from recbole_famous.model.baselines import augment
from recbole_famous.model.baselines.contrastive import anchored_nce
from recbole_famous.model.baselines.sasrec_encoder import SASRecEncoder


def mutual_distillation(logits: list[torch.Tensor], tau: float) -> torch.Tensor:
    """Sum over network pairs a > b of EMKD's symmetric, target-detached KL at temperature ``tau``."""
    log_p = [F.log_softmax(z / tau, dim=-1) for z in logits]
    total = logits[0].new_zeros(())
    for a in range(len(logits)):
        for b in range(a):
            ab = F.kl_div(log_p[a], log_p[b].detach(), reduction="batchmean", log_target=True)
            ba = F.kl_div(log_p[b], log_p[a].detach(), reduction="batchmean", log_target=True)
            total = total + (ab + ba) / 2
    return total


class EMKD(SequentialRecommender):
    # CE and the distillation term are per sample and exact on trimmed batches; the contrastive terms take their
    # negatives from the batch, which length grouping fills with sequences of one length. The encoder can be split
    # (``length_split``): ``forward`` encodes each sequence on its own, batch first, so every loss term sees the
    # batch it always saw.
    length_batches = "allowed"

    _init_weights = SASRec._init_weights

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["loss_type"] != "CE":
            raise UsageError(f"EMKD: only loss_type CE is supported, got {config['loss_type']!r}")
        if int(config["n_networks"]) < 1 or int(config["n_views"]) < 0 or not 0 < config["mask_ratio"] <= 1:
            raise UsageError("EMKD: need n_networks >= 1, n_views >= 0 and 0 < mask_ratio <= 1, got "
                             f"{config['n_networks']}, {config['n_views']}, {config['mask_ratio']}")
        if not config["tau"] > 0:
            raise UsageError(f"EMKD: tau must be > 0, got {config['tau']}")
        self.n_networks, self.n_views, self.mask_ratio = int(config["n_networks"]), int(config["n_views"]), config["mask_ratio"]
        self.tau, self.mu, self.lmd = config["tau"], config["kd_weight"], config["cl_weight"]
        self.initializer_range = config["initializer_range"]
        self.mask_token = self.n_items  # one extra row per table
        self.item_embeddings = nn.ModuleList(
            nn.Embedding(self.n_items + 1, config["hidden_size"], padding_idx=0) for _ in range(self.n_networks))
        self.networks = nn.ModuleList(SASRecEncoder(config, self.max_seq_length) for _ in range(self.n_networks))
        self.loss_fct = nn.CrossEntropyLoss()
        self.apply(self._init_weights)

    def forward(self, item_seq, item_seq_len):
        """Each network's representation of each sequence: (B, N, d) (batch first, so that ``length_split`` can
        run it on length-sorted parts of the batch)."""
        mask = self.get_attention_mask(item_seq)
        return torch.stack([net(table(item_seq), mask, item_seq_len)
                            for table, net in zip(self.item_embeddings, self.networks)], dim=1)

    def network_logits(self, states: torch.Tensor) -> list[torch.Tensor]:
        """Each network's item scores from its states (B, N, d): N tensors (B, |I|)."""
        return [h @ table.weight[: self.n_items].t() for h, table in zip(states.unbind(1), self.item_embeddings)]

    def calculate_loss(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        states = self.forward(item_seq, item_seq_len)
        logits = self.network_logits(states)
        anchors = states.transpose(0, 1)  # (N, B, d)
        loss = sum(self.loss_fct(z, target) for z in logits)
        if self.mu > 0 and self.n_networks > 1:
            loss = loss + self.mu * mutual_distillation(logits, self.tau)
        if self.lmd > 0 and self.n_views > 0:
            cl = anchors.new_zeros(())
            for _ in range(self.n_views):
                views = self.forward(*augment.random_mask(item_seq, item_seq_len, self.mask_ratio,
                                                          self.mask_token)).transpose(0, 1)
                for n in range(self.n_networks):
                    cl = cl + anchored_nce(anchors[n], views[n], anchors[n], self.tau, "cos")  # ICL
                    for u in range(self.n_networks):
                        if u != n:
                            cl = cl + anchored_nce(anchors[n], views[u], anchors[u], self.tau, "cos")  # CCL
            loss = loss + self.lmd * cl / self.n_views
        return loss

    def predict(self, interaction):
        states = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item = interaction[self.ITEM_ID]
        return torch.stack([(h * t(item)).sum(-1) for h, t in zip(states.unbind(1), self.item_embeddings)]).mean(0)

    def full_sort_predict(self, interaction):
        states = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.stack(self.network_logits(states)).mean(0)
