"""FamouSRec: Frequency-Augmented Mixture-of-Heterogeneous-Experts for sequential recommendation (WWW 2025).

The model, top to bottom (equations of the paper; ``docs/model.md`` restates them as implemented here, (M1)-(M30),
and lists the decisions the paper leaves open, §11):

1. **Padding.** RecBole right pads (``[i1..it, 0..0]``). We convert to left padding once, at the
   input (``padding.right_to_left_pad``), so that the Fourier filters, every expert and the read-out
   all see the most recent item at the last position n-1, whatever the length: the spectrum of a
   history no longer shifts with its length, the read-out is always position n-1 (Eq. 7, "the
   n-th (last) position"), and anything after the last real item in RecBole's row is dropped.
   Padded positions are set to zero before each router, so each FFT sees a zero-padded signal.
2. **Embedding** (Eq. 1): ``E_u = Dropout(LayerNorm(E + P))``, item embeddings shared with the
   prediction layer, learnable positions (position n-1 = most recent item).
3. **L MoE layers** (``mixture.MoELayer``): frequency-augmented router (Eqs. 2-6, ``router.py``),
   heterogeneous experts (``experts.py``), top-k mixture (Eqs. 7-9). Between two layers (the paper
   is silent) ``inter_layer: residual`` gives ``H <- LayerNorm(H + Dropout(F))``, ``none`` gives
   ``H <- F``. The last layer computes only position n-1 (all the losses and the prediction need).
4. **Prediction** (Eqs. 10, 15): ``softmax(f · e_i / τ)`` over all items, cross entropy ``L_rec``.
5. **Auxiliary losses** (``losses.py``), on the last layer: ``L_spe`` (Eqs. 11-13), ``L_al`` (Eq. 14),
   ``L_bal`` (Eq. 16, averaged over layers). ``spe_mode: exact`` encodes all K² expert/component
   pairs as the paper does; ``sampled`` is the documented cheaper estimate (2K encodings). ``calculate_loss`` returns
   ``(L_rec, λ·L_spe, μ·L_al, γ·L_bal)`` (Eq. 17) so that RecBole's trainer logs each part.

Training activates every expert (``train_top_k`` defaults to K, the paper's setting); inference
uses ``eval_top_k`` (default 1) with real sparse dispatch: each user is encoded only by its chosen
expert(s). ``force_expert`` (an index or a kind name in ``experts``) serves every user with one
expert at inference (paper Table 5). ``expert_usage_share()`` reports which expert served which
share of users since the last ``reset_expert_usage()``.

Every knob is a key of ``props/model/FamouSRec.yaml``, generated from ``famousrec_config.py``, which declares each
once (default, allowed values, role, doc line) and validates it once.

Decisions the paper leaves open (default first; see ``benchmarks/ablate_famousrec_decisions.py``):

* padding: left, once at the input (above); tested: a prediction ignores everything after the
  last real item and does not depend on the rest of the batch.
* ``gate_summary: last`` (vs ``mean``): the gate reads the position the prediction reads.
* ``gate_hidden_size: 0``: Eq. 4 as written, one linear map from K·d to K.
* ``filter_init: fmlp`` (vs ``ones``): FMLP-Rec's ``randn * 0.02`` (``docs/model.md`` Eq. (M11), decision D3).
* ``inter_layer: residual`` (vs ``none``), only with ``n_layers > 1``; ``n_layers: 1`` by default.
* ``align_stop_grad: True``: L_al aligns each expert with the mixture's output, not the reverse.
* L_spe and L_al use the last MoE layer (where f is read); L_bal averages over all layers.
* ``spe_mode: exact`` (the paper's K² pairs); ``sampled`` is 2K encodings (see ``losses.py``).

Measured effects of these decisions live in ``docs/measurements.md``, not here.

Options that let the router route (issue 12; ``docs/results/synth/README.md`` measures them):

* ``gate_input: band_energy``: the gate reads each component's log band energy, sign-invariant and
  normalised (``router.py``), instead of a linear function of the last items' embeddings.
* ``train_routing: switch``: top-1 routing in training that keeps the gate's gradient
  (``mixture.py``); ``balance_loss: switch``: a load balance that sees the hard assignment.
* ``filter_init: bands``: expert j's filter starts as the j-th of K frequency bands.
* ``align_target: others``: L_al's positive is the mixture of the *other* experts.
* ``dropout_position: components``: hidden dropout after the filters, not before the FFT.
* ``diagnostics_users``: routing diagnostics after each validation (``recbole_famous/diagnostics.py``, which the
  trainer calls: a probe from outside the model).

Speed (issue 13; ``docs/speed.md`` measures them):

* ``expert_input: history``: each expert reads only the real positions of its component (from the first
  real item, read out at the last), on ``expert_parts`` length-sorted parts of the batch, each trimmed to
  its longest history (``history.py``); ``window`` reads the whole left-padded window, spill included.
  With ``history`` the router's components are computed on each part's real positions only, as a
  time-domain convolution (``FrequencyRouter.history_components``): the same values as the window's FFT
  read there, without the (B, K, n, d) window.
* ``spe_users``: L_spe (Eqs. 11-13) on that many users drawn at random from each batch (0 = all): each KL
  is still over all items; the numerator and denominator are estimated on the subset (unbiased each).
* ``spe_items``: L_spe's item distributions (Eq. 13) over that many items drawn at random per batch
  (0 = all |I|): the KLs of the distributions renormalised on the subset, a biased, cheaper estimate.
"""
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_famous.model.experts import MambaExpert
from recbole_famous.model.famousrec_config import FamouSRecConfig, roles
from recbole_famous.model.losses import (alignment_loss, load_balance_loss, others_target, specialization_loss,
                                         switch_balance_loss)
from recbole_famous.model.mixture import MoELayer
from recbole_famous.model.padding import right_to_left_pad

class FamouSRec(SequentialRecommender):
    """FamouSRec on RecBole's sequential protocol; see the module docstring for the equations."""

    @staticmethod
    def settings_roles() -> dict:
        """The roles of the model's settings (training only, inference, environment; legacy values), which the
        checkpoint checks ask for: ``famousrec_config.roles``."""
        return roles()

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.settings = cfg = FamouSRecConfig.from_recbole(config)  # validated once, there
        self.kinds = list(cfg.experts)
        self.n_experts, self.n_layers = len(self.kinds), int(cfg.n_layers)
        self.train_top_k = int(cfg.train_top_k or self.n_experts)
        self.eval_top_k = int(cfg.eval_top_k)
        self.temperature = float(cfg.temperature)
        self.lambda_spe, self.mu_align = float(cfg.lambda_spe), float(cfg.mu_align)
        self.gamma_balance = float(cfg.gamma_balance)
        self.use_router = bool(cfg.use_router)
        self.force_expert = cfg.force_expert_index()
        self.inter_layer, self.align_stop_grad = cfg.inter_layer, bool(cfg.align_stop_grad)
        self.balance_loss, self.align_target = cfg.balance_loss, cfg.align_target
        after = cfg.dropout_position == "components"
        self.spe_mode = cfg.spe_mode
        self.spe_chunk_size, self.spe_epsilon = int(cfg.spe_chunk_size), float(cfg.spe_epsilon)
        self.spe_users, self.spe_items = int(cfg.spe_users), int(cfg.spe_items)
        self.initializer_range = float(cfg.initializer_range)
        self.diagnostics_users = int(cfg.diagnostics_users)
        d = self.hidden_size = int(cfg.hidden_size)
        params = cfg.expert_params()

        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, d)
        self.emb_norm = nn.LayerNorm(d, eps=params.layer_norm_eps)
        self.dropout = nn.Dropout(params.hidden_dropout_prob)
        self.embedding_dropout = nn.Identity() if after else self.dropout
        self.layers = nn.ModuleList(MoELayer(cfg, self.max_seq_length) for _ in range(self.n_layers))
        n_between = self.n_layers - 1 if self.inter_layer == "residual" else 0
        self.between_norms = nn.ModuleList(nn.LayerNorm(d, eps=params.layer_norm_eps) for _ in range(n_between))
        self.register_buffer("expert_usage", torch.zeros(self.n_layers, self.n_experts), persistent=False)
        self._init_weights()

    def _init_weights(self):
        """SASRec's init (normal(0, initializer_range), LayerNorm 1/0), GRU4Rec's xavier for GRUs.
        The Mamba blocks keep their own initialisation (its dt/A parameters must not be reset)."""
        skip = {id(m) for layer in self.layers for e in layer.experts if isinstance(e, MambaExpert)
                for m in e.mixer.modules()}
        for module in self.modules():
            if id(module) in skip:
                continue
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.data.normal_(0.0, self.initializer_range)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    module.bias.data.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.data.fill_(1.0)
                module.bias.data.zero_()
            elif isinstance(module, nn.GRU):
                nn.init.xavier_uniform_(module.weight_hh_l0)
                nn.init.xavier_uniform_(module.weight_ih_l0)

    # ---- encoder -------------------------------------------------------------------------------
    def encode(self, item_seq, item_seq_len, need_pairs=None, pair_users=None):
        """Left pad, embed (Eq. 1), run the MoE layers; returns the last layer's ``MoEOutput`` and
        every layer's gate logits. ``hidden`` of the output is f (B, d), Eq. 7 at position n-1."""
        if item_seq.size(1) < self.max_seq_length:  # a length-trimmed batch: the filters are defined on the full window
            item_seq = F.pad(item_seq, (0, self.max_seq_length - item_seq.size(1)))
        seq = right_to_left_pad(item_seq, item_seq_len)
        n = seq.size(1)
        pos = torch.arange(n, device=seq.device)
        mask = pos.unsqueeze(0) >= (n - item_seq_len.to(seq.device).long().clamp(0, n)).unsqueeze(1)
        keep = mask.unsqueeze(-1).to(self.item_embedding.weight.dtype)
        h = self.embedding_dropout(self.emb_norm(self.item_embedding(seq) + self.position_embedding(pos).unsqueeze(0)))
        gates = []
        top_k = self.train_top_k if self.training else self.eval_top_k
        force = None if self.training else self.force_expert
        for index, layer in enumerate(self.layers):
            last = index == self.n_layers - 1
            out = layer(h * keep, mask, top_k=top_k, last_only=last, need_pairs=need_pairs if last else None,
                        force_expert=force, pair_users=pair_users if last else None)
            gates.append(out.gate_logits)
            if out.chosen is not None:
                self.expert_usage[index] += torch.bincount(out.chosen, minlength=self.n_experts).to(
                    self.expert_usage.dtype)
            if not last:
                h = self.between_norms[index](h + self.dropout(out.hidden)) if self.inter_layer == "residual" \
                    else out.hidden
        return out, gates

    def forward(self, item_seq, item_seq_len):
        return self.encode(item_seq, item_seq_len)[0].hidden

    # ---- RecBole interface ---------------------------------------------------------------------
    def calculate_loss(self, interaction):
        """``(L_rec, λ·L_spe, μ·L_al, γ·L_bal)`` (Eq. 17): RecBole sums the tuple and logs each part."""
        need_pairs = self.spe_mode if self.lambda_spe > 0 and self.n_experts > 1 else None
        seq = interaction[self.ITEM_SEQ]
        subset = torch.randperm(seq.size(0), device=seq.device)[:self.spe_users] \
            if need_pairs and 0 < self.spe_users < seq.size(0) else None
        out, gates = self.encode(seq, interaction[self.ITEM_SEQ_LEN], need_pairs, subset)
        f, items = out.hidden, self.item_embedding.weight
        l_rec = F.cross_entropy(f @ items.t() / self.temperature, interaction[self.POS_ITEM_ID])
        zero = f.new_zeros(())
        own = out.own if subset is None else out.own.index_select(0, subset)
        spe_items = items if not 0 < self.spe_items < items.size(0) else \
            items.index_select(0, torch.randperm(items.size(0), device=items.device)[:self.spe_items])
        l_spe = self.lambda_spe * specialization_loss(own, out.pairs, spe_items, self.spe_chunk_size,
                                                      self.spe_epsilon, sampled=self.spe_mode == "sampled") \
            if need_pairs else zero
        l_al = self.mu_align * alignment_loss(out.own, self._align_target(out, f), self.temperature,
                                              self.align_stop_grad) if self.mu_align > 0 and out.own is not None else zero
        real_gates = [g for g in gates if g is not None]
        balance = switch_balance_loss if self.balance_loss == "switch" else load_balance_loss
        l_bal = self.gamma_balance * torch.stack([balance(g) for g in real_gates]).mean() \
            if self.gamma_balance > 0 and real_gates else zero
        return l_rec, l_spe, l_al, l_bal

    def _align_target(self, out, f):
        """L_al's positive (Eq. 14): the mixture output f, or (``align_target: others``) per expert the
        gate-weighted mixture of the other experts' outputs, which does not contain the anchor itself."""
        if self.align_target == "mixture":
            return f
        k = out.own.size(1)
        weights = torch.softmax(out.gate_logits, dim=-1) if out.gate_logits is not None \
            else out.own.new_full((out.own.size(0), k), 1.0 / k)
        return others_target(out.own, weights)

    def predict(self, interaction):
        f = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (f * self.item_embedding(interaction[self.ITEM_ID])).sum(-1) / self.temperature

    def full_sort_predict(self, interaction):
        f = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return f @ self.item_embedding.weight.t() / self.temperature

    # ---- analysis ------------------------------------------------------------------------------
    @torch.no_grad()
    def route(self, interaction):
        """(B,) index into ``kinds`` of the expert that serves each user at inference (the last MoE layer's
        top-1, or ``force_expert``); None without a router (every expert serves every user)."""
        if not self.use_router and self.force_expert is None:
            return None
        was_training = self.training
        self.eval()
        try:
            out, _ = self.encode(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        finally:
            self.train(was_training)
        return out.chosen
    def reset_expert_usage(self):
        self.expert_usage.zero_()

    def expert_usage_share(self):
        """Per layer, the share of users whose top-1 expert was each kind, since the last reset."""
        total = self.expert_usage.sum(1, keepdim=True).clamp(min=1)
        shares = (self.expert_usage / total).tolist()
        return [{f"{j}:{kind}": s for j, (kind, s) in enumerate(zip(self.kinds, row))} for row in shares]
