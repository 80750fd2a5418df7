"""The public pipeline steps (the README's step list) on a real slice of ml-100k, the one loading path of a trained
model and its refusals, the one parser of --key=value settings, and the interruption's resume hint."""

from __future__ import annotations

import signal

import pytest
import torch

from recbole_famous import checkpoint, pipeline
from recbole_famous.cli.bench import _sets
from recbole_famous.config import parse_overrides
from recbole_famous.errors import TrainingInterrupted, UsageError


@pytest.fixture(scope="module")
def trained_by_steps(ml100k_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("steps")
    overrides = {"data_path": ml100k_slice, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "show_progress": False,
                 "state": "WARNING", "checkpoint_dir": str(out / "saved")}
    config = pipeline.build_config("SASRec", "mlslice", overrides=overrides)
    pipeline.init_seed(config)
    dataset = pipeline.create_dataset(config)
    train, valid, test = pipeline.data_preparation(config, dataset)
    model = pipeline.build_model(config, train._dataset)
    trainer = pipeline.get_trainer(config, model, output_dir=str(out / "run"), dataset=dataset)
    trainer.fit(train, valid, show_progress=False)
    result = trainer.evaluate(test, show_progress=False)
    return trainer, test, result


def _scores(model, data):
    model.eval()
    with torch.no_grad():
        batch = next(iter(data))[0]
        return model.full_sort_predict(batch)


def test_steps_train_and_load_trained_gives_the_same_model(trained_by_steps):
    trainer, test, result = trained_by_steps
    assert 0 <= result["ndcg@10"] <= result["hit@10"] <= 1
    trained = pipeline.load_trained(trainer.saved_model_file)
    assert trained.config["MAX_ITEM_LIST_LENGTH"] == 10 and trained.meta["model"] == "SASRec"
    assert trained.dataset.item_num == trainer.model.n_items
    assert torch.equal(_scores(trained.model, trained.test_data), _scores(trainer.model, test))
    # without data: the model from the item counts the checkpoint holds, the same weights
    light = pipeline.load_trained(trainer.saved_model_file, with_data=False)
    assert light.dataset is None
    assert torch.equal(_scores(light.model, test), _scores(trainer.model, test))


def test_load_trained_refuses_what_does_not_fit(trained_by_steps, tmp_path):
    trainer, _, _ = trained_by_steps
    with pytest.raises(UsageError, match="different config.*hidden_size"):
        pipeline.load_trained(trainer.saved_model_file, overrides={"hidden_size": 32})
    with pytest.raises(UsageError, match="holds a SASRec model"):
        pipeline.load_trained(trainer.saved_model_file, model="GRU4Rec")
    ckpt = checkpoint.load(trainer.saved_model_file)
    ckpt["state_dict"].pop(next(iter(ckpt["state_dict"])))
    with pytest.raises(UsageError, match="does not fit the model"):
        pipeline.load_trained(ckpt)
    with pytest.raises(UsageError, match="checkpoint not found"):
        pipeline.load_trained(str(tmp_path / "none.pth"))


def test_one_parser_for_command_line_and_bench_set():
    text = ["learning_rate=1e-3", "topk=[5,10]", "eval_args={mode: full}", "use_gpu=false", "gpu_id=0,1",
            "train_neg_sample_args=~"]
    cli = parse_overrides(["--" + t for t in text])
    assert cli == _sets(text) == parse_overrides(text, prefix="")
    assert cli["learning_rate"] == 1e-3 and isinstance(cli["learning_rate"], float)  # yaml.safe_load: '1e-3'
    assert cli["topk"] == [5, 10] and cli["eval_args"] == {"mode": "full"} and cli["use_gpu"] is False
    assert cli["gpu_id"] == "0,1" and cli["train_neg_sample_args"] is None
    with pytest.raises(UsageError, match="--key=value"):
        parse_overrides(["learning_rate=1e-3"])
    with pytest.raises(UsageError, match="KEY=VALUE"):
        _sets(["learning_rate"])


def test_interruption_carries_its_resume_hint():
    plain = TrainingInterrupted(signal.SIGTERM)
    assert str(plain) == "training interrupted by SIGTERM" and plain.exit_code == 143 and plain.resume_hint is None
    kept = TrainingInterrupted(signal.SIGINT, epochs_done=2, checkpoint="saved/x.pth", best_epoch=1)
    assert kept.resume_hint == "--resume=saved/x.pth" and kept.exit_code == 130
    assert str(kept) == ("training interrupted by SIGINT after 2 completed epoch(s); best checkpoint kept: "
                         "saved/x.pth (epoch 1); continue with --resume=saved/x.pth")
    assert str(TrainingInterrupted(signal.SIGINT, epochs_done=0)).endswith("no checkpoint had been saved yet")


def test_default_model_is_famousrec():
    assert pipeline.default_model() == "FamouSRec"


def test_a_model_whose_dataloaders_write_config_keys_loads_its_checkpoint(quick_overrides):
    model = "BERT4Rec"
    # RecBole's data transforms (here BERT4Rec's mask) add field names to the config while the
    # dataloaders are built: the checkpoint holds them, a config checked before any data does not
    config = pipeline.build_config(model, "mlslice", overrides={**quick_overrides, "hidden_size": 16,
                                                                "embedding_size": 16, "inner_size": 32})
    pipeline.init_seed(config)
    dataset = pipeline.create_dataset(config)
    train, valid, test = pipeline.data_preparation(config, dataset)
    derived = checkpoint.DERIVED_KEYS & set(config.final_config_dict)
    assert derived  # the keys the transform wrote, so this test covers them
    model_ = pipeline.build_model(config, train._dataset)
    trainer = pipeline.get_trainer(config, model_, output_dir=quick_overrides["checkpoint_dir"] + "_run",
                                   dataset=dataset)
    trainer.fit(train, valid, show_progress=False)
    for use in ("eval", "resume"):
        loaded = pipeline.load_trained(trainer.saved_model_file, use=use)
        assert loaded.meta["model"] == model and derived <= set(loaded.config.final_config_dict)
    assert torch.equal(_scores(loaded.model, loaded.test_data), _scores(trainer.model, test))
