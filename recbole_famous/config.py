"""The plugin's Config: plugin-first model lookup and the ``props/`` layering.

Layering, lowest to highest (each layer overrides the ones before it):

1. RecBole's own defaults (``recbole/properties``: overall, the built-in model's yaml, quick-start yaml);
2. ``props/overall.yaml``: the paper's protocol;
3. ``props/model/<Model>.yaml``;
4. ``props/dataset/<Dataset>.yaml``;
5. ``config_files`` (in the order given);
6. ``overrides`` (the command line's ``--key=value``).

Unlike RecBole's Config this one never reads ``sys.argv`` (the runner passes the command line in as
``overrides``), so pytest's or another program's flags cannot leak into an experiment.

``_init_device`` first offers the config to ``recbole_famous.distributed.init_device``: a distributed process
(``local_rank`` set) with no GPU to use joins its process group with gloo on CPU; everything else is RecBole's own
set-up (single process; NCCL on CUDA).
"""

from __future__ import annotations

import importlib
import os

import yaml

from recbole_famous import compat, resources
from recbole_famous.errors import MissingResource, UsageError

compat.disable_import_time_anomaly_detection()

from recbole.config import Config as _RecBoleConfig  # noqa: E402

# The props layers (``recbole_famous.resources``: the installed copy, else the source tree's).
PROPS_DIR = resources.PROPS_DIR

# RecBole's model packages searched after the plugin's own (exlib_recommender is left out: it needs lightgbm).
_RECBOLE_MODEL_MODULES = (
    "recbole.model.sequential_recommender",
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.knowledge_aware_recommender",
)


def plugin_models() -> dict:
    """The plugin's model classes by name: every RecBole model class that ``recbole_famous.model`` imports."""
    import recbole_famous.model as plugin
    from recbole.model.abstract_recommender import AbstractRecommender

    return {
        name: obj
        for name, obj in vars(plugin).items()
        if isinstance(obj, type) and issubclass(obj, AbstractRecommender) and obj.__module__.startswith("recbole_famous")
    }


def plugin_model_names() -> list[str]:
    return sorted(plugin_models())


def recbole_model_names(modules=_RECBOLE_MODEL_MODULES) -> list[str]:
    names = set()
    for module_name in modules:
        module = importlib.import_module(module_name)
        names.update(n for n in dir(module) if isinstance(getattr(module, n), type) and n[0].isupper())
    return sorted(names)


def find_model(name: str):
    """The model class called ``name``: the plugin's models first, then RecBole's built-ins."""
    plugin = plugin_models()
    if name in plugin:
        return plugin[name]
    from recbole.model.abstract_recommender import AbstractRecommender

    for module_name in _RECBOLE_MODEL_MODULES:
        cls = getattr(importlib.import_module(module_name), name, None)
        if isinstance(cls, type) and issubclass(cls, AbstractRecommender):
            return cls
    raise UsageError(
        f"unknown model '{name}'. Plugin models: {', '.join(plugin_model_names())}; "
        f"RecBole sequential models: {', '.join(recbole_model_names(_RECBOLE_MODEL_MODULES[:1]))} "
        "(RecBole's general, context-aware and knowledge-aware models work too)"
    )


def read_yaml(path: str) -> dict:
    """Read one yaml config file, with a one-line error if it is missing or does not parse."""
    if not os.path.isfile(path):
        raise UsageError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UsageError(f"config file {path} is not valid yaml{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def _yaml_loader():
    # RecBole's own loader (scientific notation like 1e-4 read as float); built on a throwaway instance.
    return _RecBoleConfig._build_yaml_loader(None)


def parse_value(text: str):
    """A command-line value read as a config file reads it (RecBole's yaml loader): ``1e-3`` is a float, ``[5,10]``
    a list, ``{a: 1}`` a dict, ``true`` a bool, ``~`` None; text that is not valid yaml stays the text."""
    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError:
        return text


def parse_overrides(args, prefix: str = "--") -> dict:
    """``["--key=value", ...]`` (``prefix="--"``, the command line) or ``["key=value", ...]`` (``prefix=""``, e.g.
    ``bench --set``) as ``{key: parse_value(value)}``; the one parser of settings given as text. Anything else is
    a ``UsageError`` naming the argument."""
    out = {}
    for arg in args or []:
        body = arg[len(prefix):] if prefix and arg.startswith(prefix) else (arg if not prefix else None)
        if body is None or "=" not in body or not body.split("=", 1)[0]:
            raise UsageError(f"unrecognised argument '{arg}': settings are written {prefix}key=value")
        key, value = body.split("=", 1)
        out[key] = parse_value(value)
    return out


class Config(_RecBoleConfig):
    """RecBole's Config with plugin-first model lookup, ``props/`` layering and no ``sys.argv`` parsing."""

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        for path in config_file_list or []:
            read_yaml(path)  # fail early, in one line, on a missing or broken file
        super().__init__(model, dataset, config_file_list, config_dict)

    def compatibility_settings(self):
        # RecBole's version reads np.float_ etc., removed in numpy 2; ``compat.apply`` (run once, on
        # ``import recbole_famous``) already restored what RecBole needs (compat fix 1).
        pass

    def _init_device(self):
        # Distributed runs on CPU join with gloo; RecBole's own hard-codes NCCL and CUDA (recbole_famous.distributed).
        from recbole_famous import distributed

        if not distributed.init_device(self):
            super()._init_device()

    def _load_cmd_line(self):
        # Never parse sys.argv: the runner passes command-line overrides in explicitly (compat fix 5).
        return {}

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
        if model is None or dataset is None:
            raise UsageError("both a model and a dataset must be given")
        model_class = find_model(model) if isinstance(model, str) else model
        return model_class.__name__, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in protocol_layers(model, model_class, dataset):
            layer = read_yaml(path)
            self.internal_config_dict.update(layer)
            if path.endswith(f"{dataset}.yaml"):
                self.parameters["Dataset"] += [k for k in layer if k not in self.parameters["Dataset"]]


def protocol_layers(model: str, model_class, dataset: str) -> list[str]:
    """The props files layered over RecBole's defaults for a model and dataset, lowest first.

    ``overall.yaml`` (the protocol) must exist, and so must ``model/<Model>.yaml`` of a plugin model (it holds the
    model's every knob): a missing one is ``MissingResource``, never a run under RecBole's defaults. RecBole's
    built-in models and datasets without a file of their own just have no layer there.
    """
    root = resources.props_dir(PROPS_DIR)
    layers = [os.path.join(root, resources.PROTOCOL_FILE)]
    model_file = os.path.join(root, "model", f"{model}.yaml")
    if os.path.isfile(model_file):
        layers.append(model_file)
    elif str(getattr(model_class, "__module__", "")).startswith("recbole_famous"):
        raise MissingResource(f"the props layer of plugin model {model} ({model_file}) is missing: the install is "
                              "incomplete")
    dataset_file = os.path.join(root, "dataset", f"{dataset}.yaml")
    if os.path.isfile(dataset_file):
        layers.append(dataset_file)
    return layers
