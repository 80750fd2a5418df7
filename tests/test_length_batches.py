"""Length-grouped training batches (recbole_famous/data/length_batches.py) on the real ml-100k slice.

Exactness: for each model that declares it, the same samples give the same forward pass and the same batch loss
trimmed to their longest history as padded to MAX_ITEM_LIST_LENGTH (eval mode: dropout draws its masks per
tensor shape). The sampler: every sample once per epoch, length-homogeneous batches, seeded, a new order every
epoch, distributed shares that partition every batch. And runs through the runner with the key on and off.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

import run_recbole_famous as cli
from recbole_famous.data import length_batches as lb
from recbole_famous.errors import UsageError
from recbole_famous.pipeline import build_config
from recbole_famous.runner import run

SMALL_MODEL = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "num_layers": 1, "embedding_size": 16,
               "n_experts": 2, "n_networks": 2, "n_views": 1}
MAX_LEN = 20
EXACT_MODELS = ["SASRec", "GRU4Rec", "Mamba4Rec", "Crocodile", "EMKD", "CL4SRec", "DuoRec", "FMLPRec", "BERT4Rec"]


@pytest.fixture(scope="module")
def prepared(ml100k_slice):
    """The slice's SASRec config, dataset and RecBole dataloaders (MAX_ITEM_LIST_LENGTH 20)."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_famous import compat

    config = build_config("SASRec", "mlslice", overrides={"data_path": ml100k_slice, "MAX_ITEM_LIST_LENGTH": MAX_LEN,
                                                           "state": "WARNING", "show_progress": False,
                                                           "length_batches": "auto"})
    init_seed(config["seed"], True)
    data = compat.sequential_dataset_class()(config)
    train, valid, test = data_preparation(config, data)
    return config, data, train


def _batch(train, max_length: int, count: int = 48):
    """``count`` training samples of mixed real lengths up to ``max_length`` (< MAX_LEN), padded to MAX_LEN."""
    lengths = train._dataset.inter_feat["item_length"]
    index = torch.nonzero(lengths <= max_length).view(-1)
    index = index[torch.randperm(index.numel(), generator=torch.Generator().manual_seed(0))[:count]]
    return train._dataset[index.numpy()]


# ---- the sampler -------------------------------------------------------------------------------------
def test_epoch_covers_every_sample_once_in_length_homogeneous_batches(prepared):
    _, _, train = prepared
    lengths = torch.as_tensor(train._dataset.inter_feat["item_length"]).long()
    g = torch.Generator().manual_seed(7)
    batches = lb.epoch_batches(lengths, 64, g)
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(lengths.numel()))  # every sample exactly once
    sizes = sorted(b.numel() for b in batches)
    assert sizes[1:] == [64] * (len(batches) - 1) and sizes[0] == (lengths.numel() % 64 or 64)
    # consecutive in length order: ranges of different batches never overlap (beyond a shared boundary length)
    spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))
    # padded positions after trimming: fewer than random batches of the same size trimmed alike
    random_batches = torch.split(torch.randperm(lengths.numel(), generator=g), 64)
    cost = lambda bs: sum(int(lengths[b].max()) * b.numel() for b in bs)  # noqa: E731
    assert cost(batches) < cost(random_batches)  # (this slice has long histories: most samples are at MAX_LEN)


def test_order_is_seeded_and_new_every_epoch(prepared):
    _, _, train = prepared
    lengths = torch.as_tensor(train._dataset.inter_feat["item_length"]).long()

    def epochs(seed, n=2):
        g = torch.Generator().manual_seed(seed)
        return [[b.tolist() for b in lb.epoch_batches(lengths, 64, g)] for _ in range(n)]

    first, second = epochs(1)
    assert epochs(1) == [first, second]  # same seed, same batches
    assert first != second and epochs(2)[0] != first  # a new order every epoch and for another seed
    # not in length order: the batches are shuffled
    maxima = [int(lengths[b].max()) for b in map(torch.tensor, first)]
    assert maxima != sorted(maxima)


@pytest.mark.parametrize("world", [2, 3])
def test_distributed_shares_partition_each_batch(world):
    lengths = torch.randint(1, 30, (1001,), generator=torch.Generator().manual_seed(0))
    for batch in lb.epoch_batches(lengths, 96, torch.Generator().manual_seed(3)):
        parts = [lb.share(batch, world, r) for r in range(world)]
        assert torch.equal(torch.cat(parts), batch)
        assert max(p.numel() for p in parts) - min(p.numel() for p in parts) <= 1
    tiny = torch.tensor([5])
    assert [lb.share(tiny, 2, r).tolist() for r in range(2)] == [[5], [5]]  # never an empty share


def test_loader_epoch_is_trimmed_and_resumes_from_its_generator(prepared):
    config, _, train = prepared
    loader = lb.regroup(config, train)
    assert loader is not train and len(loader) == len(train)
    state = loader.generator.get_state()
    epoch1, widths, count = [], [], 0
    for batch in loader:
        epoch1.append(batch["item_id"].tolist())
        count += len(batch)
        widths.append(batch["item_id_list"].size(1))
        assert batch["item_id_list"].size(1) == int(batch["item_length"].max()) == batch["timestamp_list"].size(1)
    assert count == len(train._dataset) and min(widths) < MAX_LEN
    epoch2 = [b["item_id"].tolist() for b in loader]
    assert epoch2 != epoch1
    loader.generator.set_state(state)  # what a resumed run does (the trainer saves the generator's state)
    assert [b["item_id"].tolist() for b in loader] == epoch1
    assert [b["item_id"].tolist() for b in loader] == epoch2


# ---- per-sample exactness ----------------------------------------------------------------------------
def _model(name, ml100k_slice, data, extra=None):
    from recbole.utils import init_seed

    config = build_config(name, "mlslice", overrides={"data_path": ml100k_slice, "MAX_ITEM_LIST_LENGTH": MAX_LEN,
                                                       "state": "WARNING", **SMALL_MODEL, **(extra or {})})
    from recbole.data.transform import construct_transform

    transform = construct_transform(config)  # before the model, as in data_preparation (it sets config keys)
    init_seed(0, True)
    return config, config.model_class(config, data).eval(), transform


def _states(model, batch):
    if hasattr(model, "get_attention_mask") and type(model).__name__ == "BERT4Rec":
        out = model.forward(batch["item_id_list"])
        real = torch.arange(out.size(1)).unsqueeze(0) < batch["item_length"].unsqueeze(1)
        return out[real]
    return model.forward(batch["item_id_list"], batch["item_length"])


@pytest.mark.parametrize("name", EXACT_MODELS)
def test_trimmed_batch_gives_the_same_forward_and_loss(name, prepared, ml100k_slice):
    config0, data, train = prepared
    config, model, transform = _model(name, ml100k_slice, train._dataset)
    assert lb.declared(config.model_class) in lb.DECLARATIONS
    full = _batch(train, max_length=6)
    trimmed = lb.trim(copy.deepcopy(full), ["item_id_list", "timestamp_list"], "item_length")
    assert full["item_id_list"].size(1) == MAX_LEN and trimmed["item_id_list"].size(1) <= 6
    with torch.no_grad():
        assert torch.allclose(_states(model, full), _states(model, trimmed), atol=1e-5, rtol=1e-5)
        losses = []
        for batch in (full, trimmed):
            random.seed(5)  # BERT4Rec's masks (Python's random, one draw per real item whatever the width)
            torch.manual_seed(5)  # DuoRec's same-target positives (one draw per sample)
            loss = model.calculate_loss(transform(train._dataset, copy.deepcopy(batch)))
            losses.append(sum(loss) if isinstance(loss, tuple) else loss)
    if name in ("CL4SRec", "EMKD"):
        # their augmentations draw torch.rand per position (a different stream at another width): compare the loss
        # without them; the views' distribution is the same at every width (they only touch real positions)
        off = {"CL4SRec": {"lmd": 0.0}, "EMKD": {"cl_weight": 0.0}}[name]
        _, model, _ = _model(name, ml100k_slice, train._dataset, off)
        with torch.no_grad():
            losses = [model.calculate_loss(b) for b in (full, trimmed)]
    assert torch.isfinite(losses[0]) and abs(losses[0].item() - losses[1].item()) <= 1e-5 * max(1.0, abs(losses[0].item()))


def test_declarations(prepared):
    from recbole_famous.config import find_model

    on = {n for n in EXACT_MODELS + ["FEARec", "NARM"] if lb.declared(find_model(n)) == "on"}
    assert on == {"SASRec", "GRU4Rec", "Mamba4Rec"}
    assert lb.declared(find_model("NARM")) is None and lb.declared(find_model("FEARec")) is None

    class SASRecChild(find_model("SASRec")):  # a declaration is never inherited
        pass

    assert lb.declared(SASRecChild) is None


# ---- through the runner --------------------------------------------------------------------------------
def test_runner_with_the_keys_on_and_off(quick_overrides):
    grouped = run("SASRec", "mlslice", overrides={**quick_overrides, "epochs": 1, "length_batches": True})
    plain = run("SASRec", "mlslice", overrides={**quick_overrides, "epochs": 1, "length_split": 0})
    split = run("SASRec", "mlslice", overrides={**quick_overrides, "epochs": 1})  # the defaults
    assert split["config"]["length_batches"] is False and split["config"]["length_split"] == "auto"
    for result in (grouped, plain, split):
        assert result["epochs_run"] == 1 and torch.isfinite(torch.tensor(result["train_loss"][0]))
        assert 0 <= result["best_valid_result"]["ndcg@10"] <= 1
    assert grouped["train_loss"][0] != plain["train_loss"][0]  # other batches
    # the same batches and losses: differences from dropout masks drawn per part and float rounding only
    assert abs(split["train_loss"][0] - plain["train_loss"][0]) < 0.02 * abs(plain["train_loss"][0])
    forced = run("CL4SRec", "mlslice", overrides={**quick_overrides, "epochs": 1, "length_batches": True,
                                                   "hidden_size": 16, "inner_size": 32})
    assert forced["epochs_run"] == 1


def test_true_for_an_undeclared_model_is_a_one_line_error(quick_overrides, capsys, monkeypatch, tmp_path):
    with pytest.raises(UsageError, match="NARM does not declare"):
        lb.wanted(build_config("NARM", "mlslice", overrides={**quick_overrides, "length_batches": True}))
    assert not lb.wanted(build_config("NARM", "mlslice", overrides=quick_overrides))  # auto: RecBole's batches
    with pytest.raises(UsageError, match="must be auto, true or false"):
        lb.setting({"length_batches": "sometimes"})
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--model=NARM", "--dataset=mlslice", "--length_batches=true",
                     *[f"--{k}={v}" for k, v in quick_overrides.items()]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "length_batches" in err


def test_a_checkpoint_from_before_the_key_resumes_on_recbole_batches(quick_overrides):
    from recbole_famous import checkpoint

    plain = build_config("SASRec", "mlslice", overrides={**quick_overrides, "length_batches": False, "length_split": 0})
    old = {k: v for k, v in checkpoint.fingerprint(plain).items() if k not in ("length_batches", "length_split")}
    ckpt = {checkpoint.META_KEY: {"model": "SASRec", "dataset": "mlslice", "fingerprint": old,
                                  "settings": dict(quick_overrides)}}
    _, _, _, settings = checkpoint.rebuild_inputs(ckpt)
    assert settings["length_batches"] is False
    checkpoint.check_compatible(ckpt, build_config("SASRec", "mlslice", overrides=settings), "resume")
    assert settings["length_split"] == 0
    with pytest.raises(UsageError, match="length_batches"):
        checkpoint.check_compatible(ckpt, build_config("SASRec", "mlslice", overrides={
            **settings, "length_batches": True}), "resume")


# ---- length-split encoding inside RecBole's batches ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(lb.SPLIT_MODELS))
def test_split_encoder_gives_the_same_forward_and_whole_loss(name, prepared, ml100k_slice):
    """The whole loss (augmentations, in-batch negatives, covariance) on the same batch: the split only changes
    how the encoder is run."""
    _, _, train = prepared
    config, model, transform = _model(name, ml100k_slice, train._dataset)
    full = _batch(train, max_length=MAX_LEN, count=40)  # mixed lengths up to the maximum
    assert int(full["item_length"].min()) < int(full["item_length"].max())
    outs, losses = [], []
    for parts in (1, 4):
        if parts > 1:
            model.forward = lb.split_forward(model.forward, parts)
        with torch.no_grad():
            outs.append(model.forward(full["item_id_list"], full["item_length"]))
            torch.manual_seed(5)  # the same augmentations / same-target draws (they are drawn outside forward)
            loss = model.calculate_loss(transform(train._dataset, copy.deepcopy(full)))
            losses.append(sum(loss) if isinstance(loss, tuple) else loss)
    assert torch.allclose(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    assert abs(losses[0].item() - losses[1].item()) <= 1e-5 * max(1.0, abs(losses[0].item()))


def test_split_settings(quick_overrides):
    assert lb.split_setting(build_config("SASRec", "mlslice", overrides=quick_overrides)) == lb.SPLIT_PARTS
    grouped = build_config("SASRec", "mlslice", overrides={**quick_overrides, "length_batches": True})
    assert lb.split_setting(grouped) == 0  # grouped batches are homogeneous already
    assert lb.split_setting(build_config("EMKD", "mlslice", overrides=quick_overrides)) == lb.SPLIT_PARTS
    assert lb.split_setting(build_config("FMLPRec", "mlslice", overrides=quick_overrides)) == 0  # full-length FFT
    with pytest.raises(UsageError, match="length_split"):
        lb.split_setting(build_config("NARM", "mlslice", overrides={**quick_overrides, "length_split": 4}))


def test_a_split_model_is_built_as_a_subclass_not_patched(ml100k_slice, prepared):
    """``build_model`` builds the length-split encoder as a subclass (same name, same state dict); nothing is
    patched onto the instance, and ``unsplit_forward`` is the class's own forward on the whole batch."""
    from recbole.model.sequential_recommender.sasrec import SASRec

    from recbole_famous.pipeline import build_model

    _, _, train = prepared
    base = {"data_path": ml100k_slice, "MAX_ITEM_LIST_LENGTH": MAX_LEN, "state": "WARNING", "show_progress": False}
    model = build_model(build_config("SASRec", "mlslice", overrides=base), train._dataset).eval()
    assert isinstance(model, SASRec) and type(model) is not SASRec and type(model).__name__ == "SASRec"
    assert model.split_parts == lb.SPLIT_PARTS and "forward" not in vars(model)
    assert lb.split_class(SASRec, lb.SPLIT_PARTS) is type(model)  # one class per (model, parts)
    plain = build_model(build_config("SASRec", "mlslice", overrides={**base, "length_split": 0}), train._dataset)
    assert type(plain) is SASRec and set(plain.state_dict()) == set(model.state_dict())
    full = _batch(train, max_length=MAX_LEN, count=40)
    with torch.no_grad():
        split_out = model(full["item_id_list"], full["item_length"])
        whole = model.unsplit_forward(full["item_id_list"], full["item_length"])
    assert torch.allclose(split_out, whole, atol=1e-5, rtol=1e-5)


def test_grouped_run_resumed_after_an_epoch_gives_the_uninterrupted_result(ml100k_slice, tmp_path):
    from reliability_common import quick

    base = {**quick(ml100k_slice, tmp_path), "length_batches": True, "n_layers": 1}
    whole = run("SASRec", "mlslice", overrides={**base, "epochs": 2})
    first = run("SASRec", "mlslice", overrides={**base, "epochs": 1})
    resumed = run(resume=first["checkpoint"], overrides={"epochs": 2})
    assert resumed["train_loss"] == whole["train_loss"] and resumed["test_result"] == whole["test_result"]
