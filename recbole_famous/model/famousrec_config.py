"""FamouSRec's settings, each declared once: its default, its allowed values, its role and its doc line.

``FamouSRecConfig`` is what the model reads (``FamouSRecConfig.from_recbole(config)``: a key RecBole's config does
not hold, or holds as ``~``, takes the default), validated once, at construction (``UsageError`` with the setting's
name). ``props/model/FamouSRec.yaml`` is generated from it (``python -m recbole_famous.model.famousrec_yaml
--write``; a test keeps the committed file equal to the generated text), so the defaults and their comments live
here only. Equation numbers are the paper's; ``docs/model.md`` restates them as implemented (M1-M30) and lists
the decisions the paper leaves open (D1-D24).

Roles, which the checkpoint checks ask the model for (``roles()``) instead of listing FamouSRec's keys:

* ``model``: changes what a trained model computes; a checkpoint is evaluated only with the value it was made with;
* ``training``: shapes training only (the auxiliary losses and their estimates, the experts active in training);
* ``inference``: an evaluation or a serving call may choose it freely (how inference routes);
* ``environment``: the same numbers whatever its value (tested), never part of a checkpoint's fingerprint.

``legacy``: the value that reproduces what a checkpoint made before the key existed did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from recbole_famous.errors import UsageError
from recbole_famous.model.experts import EXPERT_KINDS, ExpertParams
from recbole_famous.model.mixture import EXPERT_INPUTS, TRAIN_ROUTINGS
from recbole_famous.model.router import FILTER_INITS, GATE_INPUTS

ROLES = ("model", "training", "inference", "environment")
_NO_LEGACY = object()


def _s(default, doc: str = "", role: str = "model", allowed=None, minimum=None, section: str = "",
       legacy=_NO_LEGACY):
    """A setting: a dataclass field whose metadata holds its doc line (continuation lines after ``\\n``), role,
    allowed values, minimum, the yaml section it opens and its legacy value."""
    meta = {"doc": doc, "role": role, "allowed": allowed, "minimum": minimum, "section": section, "legacy": legacy}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class FamouSRecConfig:
    # --- the mixture (Section 3.2) ---
    experts: list = _s(["attention", "gru", "mamba", "mlp"],
                       "one expert per entry; K = its length; repeats allowed (homogeneous mixtures)",
                       section="the mixture (Section 3.2)")
    n_layers: int = _s(1, "MoE layers L; each has its own router and experts", minimum=1)
    train_top_k: int | None = _s(None, "experts active per user in training (Eqs. 8-9); ~ = all K (the paper's "
                                       "setting)", role="training")
    eval_top_k: int = _s(1, "experts active per user at inference; 1 = the paper; < K uses sparse dispatch",
                         role="inference")
    temperature: float = _s(1.0, "tau of L_rec (Eq. 15) and L_al (Eq. 14)")
    # --- the objective ---
    lambda_spe: float = _s(0.1, "expert-frequency contrastive loss (Eqs. 11-13); 0 = \"w/o L_spe\" ablation",
                           role="training",
                           section="the objective, Eq. 17: L = L_rec + lambda L_spe + mu L_al + gamma L_bal")
    mu_align: float = _s(0.1, "expert alignment contrastive loss (Eq. 14); 0 = \"w/o L_al\"", role="training")
    gamma_balance: float = _s(0.1, "load balance loss (Eq. 16); 0 = \"w/o load balance\"", role="training")
    # --- the paper's ablation switches ---
    use_router: bool = _s(True, "False = \"w/o router\": no gate, average all experts (training and inference)",
                          section="the paper's ablation switches")
    frequency_learning: bool = _s(True, "False = \"w/o frequency-domain learning\": a linear map per expert "
                                        "instead of FFT + filters")
    force_expert: object = _s(None, "index or kind name: serve every user with that expert at inference (Table 5)",
                              role="inference")
    # --- decisions the paper leaves open ---
    gate_summary: str = _s("last", "summary of X = [x_1;...;x_K] feeding the gate (Eq. 4): last (most recent "
                                   "item) | mean (real positions)", allowed=("last", "mean"),
                           section="decisions the paper leaves open")
    gate_hidden_size: int = _s(0, "0 = Eq. 4 as written (linear); > 0 = one hidden GELU layer", minimum=0)
    filter_init: str = _s("fmlp", "fmlp = randn * 0.02 (FMLP-Rec); ones = 1 + randn * 0.02 (each component starts "
                                  "as the input);\n  bands = expert j passes the j-th of K equal bands (+ the same "
                                  "noise)", allowed=tuple(FILTER_INITS))
    inter_layer: str = _s("residual", "between MoE layers: residual = LayerNorm(H + Dropout(F)); none = F",
                          allowed=("residual", "none"))
    gate_input: str = _s("components", "X of Eq. 4: components (summarised, as written) | band_energy (log energy "
                                       "of each\n  component over the real positions relative to the input's: "
                                       "sign-invariant)", allowed=GATE_INPUTS)
    train_routing: str = _s("dense", "training: dense = Eqs. 7-9 with train_top_k | switch = top-1, scaled by its "
                                     "probability", allowed=tuple(TRAIN_ROUTINGS))
    balance_loss: str = _s("paper", "paper = Eq. 16 (mean gate vs uniform) | switch = K * sum_j share_j * mean p_j "
                                    "- 1", allowed=("paper", "switch"))
    align_target: str = _s("mixture", "L_al's positive: mixture = f (Eq. 14) | others = mixture of the other "
                                      "experts", allowed=("mixture", "others"))
    dropout_position: str = _s("embedding", "hidden dropout on the embeddings before the FFT (embedding) | on each "
                                            "component after it", allowed=("embedding", "components"))
    align_stop_grad: bool = _s(True, "L_al treats the mixture output f as a fixed target (moves only the experts)",
                               role="training")
    spe_mode: str = _s("exact", "exact = all K^2 expert/component pairs (Eq. 11); sampled = one mismatched "
                                "component\n  per user and expert (2K encodings instead of K^2; unbiased estimate "
                                "of the denominator)", allowed=("exact", "sampled"))
    expert_input: str = _s("window", "what each expert reads (Eq. 7): window = its component over the whole "
                                     "left-padded window\n  (padded positions included); history = the real "
                                     "positions only, from the first real\n  item, on expert_parts length-sorted "
                                     "parts of the batch, each trimmed (history.py)",
                           allowed=tuple(EXPERT_INPUTS), legacy="window")
    expert_parts: int = _s(8, "parts per batch with expert_input: history (1 = the batch trimmed to its longest "
                              "history)", role="environment", minimum=1)
    spe_users: int = _s(0, "L_spe on this many random users of each batch (0 = all; an estimate when > 0)",
                        role="training", minimum=0, legacy=0)
    spe_items: int = _s(0, "L_spe's distributions (Eq. 13) over this many random items per batch (0 = all; an "
                           "estimate)", role="training", minimum=0, legacy=0)
    diagnostics_users: int = _s(2048, "routing diagnostics logged after each validation, on this many valid users "
                                      "(0 = off)", minimum=0)
    spe_chunk_size: int = _s(256, "users per chunk of L_spe: bounds its memory to K^2 * chunk * |I| values at a "
                                  "time", role="training", minimum=1)
    spe_epsilon: float = _s(1e-6, "added to L_spe's denominator", role="training")
    # --- expert hyper-parameters ---
    hidden_size: int = _s(64, section="expert hyper-parameters", minimum=1)
    inner_size: int = _s(256, "point-wise feed-forward width (attention, mamba and mlp experts)", minimum=1)
    n_heads: int = _s(2, "attention expert", minimum=1)
    hidden_dropout_prob: float = _s(0.5)
    attn_dropout_prob: float = _s(0.5)
    hidden_act: str = _s("gelu")
    layer_norm_eps: float = _s(1e-12)
    initializer_range: float = _s(0.02)
    d_state: int = _s(32, "mamba expert (Mamba4Rec's defaults)", minimum=1)
    d_conv: int = _s(4, minimum=1)
    expand: int = _s(2, minimum=1)
    # from props/overall.yaml, not FamouSRec.yaml: the prediction's loss (Eq. 15)
    loss_type: str = _s("CE", "only cross entropy (Eq. 15)", allowed=("CE",), section="overall")

    def __post_init__(self):
        """Each setting checked once: allowed values, minimums, then what depends on the number of experts."""
        kinds = self.experts
        if isinstance(kinds, str) or not kinds:
            raise UsageError(f"FamouSRec: 'experts' must be a non-empty list of {list(EXPERT_KINDS)}, got {kinds!r}")
        unknown = [k for k in kinds if k not in EXPERT_KINDS]
        if unknown:
            raise UsageError(f"FamouSRec: unknown expert kind(s) {unknown}; known: {list(EXPERT_KINDS)}")
        for f in dataclasses.fields(self):
            value, allowed, minimum = getattr(self, f.name), f.metadata["allowed"], f.metadata["minimum"]
            if f.name == "loss_type" and value not in allowed:
                raise UsageError(f"FamouSRec: only loss_type CE is supported (Eq. 15), got {value!r}")
            if allowed is not None and value not in allowed:
                raise UsageError(f"FamouSRec: {f.name} must be one of {list(allowed)}, got {value!r}")
            if minimum is not None and int(value) < minimum:
                raise UsageError(f"FamouSRec: {f.name} must be >= {minimum}, got {value}")
        n = len(kinds)
        for key in ("train_top_k", "eval_top_k"):
            value = getattr(self, key)
            if value is not None and not 1 <= int(value) <= n:
                raise UsageError(f"FamouSRec: {key} must be between 1 and {n} (the number of experts), got {value}")
        if float(self.temperature) <= 0:
            raise UsageError(f"FamouSRec: temperature must be > 0, got {self.temperature}")
        self.force_expert_index()  # a name not among the experts, or an index out of range

    @classmethod
    def from_recbole(cls, config) -> "FamouSRecConfig":
        """The settings from RecBole's config (``config[key]``); a missing key or ``~`` takes the default."""
        values = {}
        for f in dataclasses.fields(cls):
            try:
                value = config[f.name]
            except KeyError:
                value = None
            if value is not None:
                values[f.name] = value
        return cls(**values)

    def expert_params(self) -> ExpertParams:
        """The hyper-parameters every expert kind reads."""
        return ExpertParams(int(self.hidden_size), int(self.inner_size), int(self.n_heads),
                            float(self.hidden_dropout_prob), float(self.attn_dropout_prob), self.hidden_act,
                            float(self.layer_norm_eps), int(self.d_state), int(self.d_conv), int(self.expand))

    def force_expert_index(self) -> int | None:
        """``force_expert`` as an index into ``experts`` (it may be given as a kind name)."""
        value = self.force_expert
        if value is None:
            return None
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if value not in self.experts:
                raise UsageError(f"FamouSRec: force_expert {value!r} is not in experts {list(self.experts)}")
            return list(self.experts).index(value)
        index = int(value)
        if not 0 <= index < len(self.experts):
            raise UsageError(f"FamouSRec: force_expert index {index} out of range for {len(self.experts)} experts")
        return index


def roles() -> dict:
    """``{role: frozenset of keys}`` for the four roles, and ``"legacy": {key: value}``: what the checkpoint checks
    need to know about FamouSRec's settings."""
    out = {role: frozenset(f.name for f in dataclasses.fields(FamouSRecConfig) if f.metadata["role"] == role)
           for role in ROLES}
    out["legacy"] = {f.name: f.metadata["legacy"] for f in dataclasses.fields(FamouSRecConfig)
                     if f.metadata["legacy"] is not _NO_LEGACY}
    return out
