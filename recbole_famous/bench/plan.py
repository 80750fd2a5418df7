"""Budget profiles and the run plan: which (model, dataset, seed, variant) runs a benchmark makes.

A profile is ``props/bench/<name>.yaml`` (or any yaml path) with

* ``description``: one line, printed under every table the profile makes;
* ``models``, ``datasets``, ``seeds``: the default run list; ``seeds_by_model`` overrides ``seeds`` per model,
  for every dataset (``M: [seeds]``) or for some (``M: {dataset: [seeds]}``, e.g. the best other baseline of one
  dataset, chosen on its validation split);
* ``config``: RecBole keys applied to every run (the budget: epochs, patience, batch sizes, ...);
* ``model_config``: extra keys per model name;
* ``threads``: torch CPU threads per run (default 1: on a shared 2-core machine one thread per process ran
  2.7x faster than two in our measurement, because the threads of concurrent processes contend).
* ``variants``: named experiments on the profile's runs (``bench run --variants NAME``): the same models,
  datasets and seeds with the variant's keys, stored and tabled apart (``<model>--<name>``). Either
  ``name: {key: value, ...}`` (keys for every model), or ``name: {model: M, group: G, label: TEXT, config_file:
  F, set: {key: value, ...}}``: a variant of model ``M`` only, with the table (``group``) and row (``label``) it
  belongs to, its keys those of ``props/F`` (optional) under ``set``'s;
* ``include``: yaml files of shared ``variants`` (a study, e.g. ``studies/famousrec_ablations.yaml``, the paper's
  ablations), relative to the profile's folder or to ``props/bench/``; the profile's own variants win.

Every run gets, lowest to highest: the plugin's layering (``props/overall.yaml``, model, dataset yaml), the
profile's ``config``, its ``model_config[model]``, the variant's keys (ablations), then ``--set`` keys.
The protocol itself (splits, filtering, full ranking, metrics) is never changed by a profile.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from recbole_famous.config import PROPS_DIR, find_model, read_yaml
from recbole_famous.errors import UsageError
from recbole_famous.model.rules import is_one_pass

BENCH_PROPS = os.path.join(PROPS_DIR, "bench")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
_LABEL = re.compile(r"([A-Za-z0-9_]+)(?:\[([A-Za-z0-9_.+-]+)\])?")  # M or M[variant] (RunSpec.label)
_PROFILE_KEYS = {"description", "models", "datasets", "seeds", "seeds_by_model", "config", "model_config", "threads",
                 "variants", "include"}
_VARIANT_KEYS = {"model", "group", "label", "set", "config_file"}  # a variant's long form; else a mapping is its keys


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    models: tuple
    datasets: tuple
    seeds: tuple
    seeds_by_model: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    model_config: dict = field(default_factory=dict)
    threads: int = 1
    variants: dict = field(default_factory=dict)  # name -> overrides: named experiments on the profile's runs
    variant_meta: dict = field(default_factory=dict)  # name -> {"model", "group", "label"} (long form)

    def variants_in(self, group: str) -> list:
        """The names of the variants of table ``group`` (``table3``, ...), in the order the yaml lists them."""
        return [n for n, meta in self.variant_meta.items() if meta.get("group") == group]

    def seeds_for(self, model: str, dataset: str | None = None) -> tuple:
        """``model``'s seeds on ``dataset``: ``seeds_by_model``'s list, or its ``dataset`` entry, else ``seeds``."""
        seeds = self.seeds_by_model.get(model, self.seeds)
        if isinstance(seeds, dict):
            seeds = seeds.get(dataset, self.seeds)
        return tuple(seeds)


@dataclass(frozen=True)
class RunSpec:
    """One run: a model (optionally a named config variant of it) on a dataset with a seed, under a profile."""

    model: str
    dataset: str
    seed: int
    profile: str
    variant: str = ""  # "" = the model as configured; else an ablation name
    overrides: str = "{}"  # the run's complete RecBole overrides, as canonical JSON (hashable, comparable)

    @property
    def label(self) -> str:
        return f"{self.model}[{self.variant}]" if self.variant else self.model

    @property
    def key(self) -> str:
        """Relative path of the run's JSON: unique per (profile, dataset, model, variant, seed)."""
        name = f"{self.model}--{self.variant}" if self.variant else self.model
        return os.path.join(self.profile, self.dataset, name, f"seed{self.seed}.json")

    def overrides_dict(self) -> dict:
        return json.loads(self.overrides)


def profile_path(name_or_path: str) -> str:
    if os.path.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return name_or_path
    return os.path.join(BENCH_PROPS, f"{name_or_path}.yaml")


def available_profiles() -> list:
    if not os.path.isdir(BENCH_PROPS):
        return []
    return sorted(f[:-5] for f in os.listdir(BENCH_PROPS) if f.endswith(".yaml"))


def load_profile(name_or_path: str) -> Profile:
    """Read and check a profile; one-line ``UsageError`` on anything wrong."""
    path = profile_path(name_or_path)
    if not os.path.isfile(path):
        raise UsageError(f"unknown benchmark profile '{name_or_path}' (no {path}); known: {available_profiles()}")
    data = read_yaml(path)
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise UsageError(f"profile {path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_PROFILE_KEYS)}")
    for key in ("config", "model_config", "seeds_by_model", "variants"):
        if not isinstance(data.get(key) or {}, dict):
            raise UsageError(f"profile {path}: '{key}' must be a mapping")
    variants, meta = _variants(data, path)
    name = os.path.splitext(os.path.basename(path))[0]
    return Profile(
        name=name,
        description=str(data.get("description") or name),
        models=tuple(_str_list(data.get("models") or [], "models", path)),
        datasets=tuple(_str_list(data.get("datasets") or [], "datasets", path)),
        seeds=tuple(_int_list(data.get("seeds") or [2020], "seeds", path)),
        seeds_by_model={m: _model_seeds(s, f"seeds_by_model.{m}", path)
                        for m, s in (data.get("seeds_by_model") or {}).items()},
        config=dict(data.get("config") or {}),
        model_config={m: dict(c or {}) for m, c in (data.get("model_config") or {}).items()},
        threads=_int_list(data.get("threads", 1), "threads", path)[0],
        variants=variants,
        variant_meta=meta,
    )


def _model_seeds(value, key, path):
    """A ``seeds_by_model`` entry: a seed list (every dataset) or ``{dataset: seed list}``."""
    if isinstance(value, dict):
        return {str(ds): tuple(_int_list(s, f"{key}.{ds}", path)) for ds, s in value.items()}
    return tuple(_int_list(value, key, path))


def _config_file_keys(name, path) -> dict:
    """The keys of a config yaml under ``props/`` (e.g. ``famousrec_routing.yaml``) that a variant starts from."""
    if not name:
        return {}
    file = os.path.join(PROPS_DIR, str(name))
    if not os.path.isfile(file):
        raise UsageError(f"profile {path}: config_file {name!r} not found under {PROPS_DIR}")
    return dict(read_yaml(file) or {})


def _variants(data: dict, path: str) -> tuple:
    """``({name: keys}, {name: {"model", "group", "label"}})`` of a profile: its included files' variants, then its
    own (which win)."""
    merged = {}
    includes = data.get("include") or []
    for inc in [includes] if isinstance(includes, str) else includes:
        candidates = [inc] if os.path.isabs(inc) else [os.path.join(os.path.dirname(path), inc),
                                                       os.path.join(BENCH_PROPS, inc)]
        found = next((p for p in candidates if os.path.isfile(p)), None)
        if found is None:
            raise UsageError(f"profile {path}: included file {inc!r} not found (next to the profile or in "
                             f"{BENCH_PROPS})")
        extra = read_yaml(found) or {}
        if set(extra) - {"variants"} or not isinstance(extra.get("variants") or {}, dict):
            raise UsageError(f"{found}: an included file holds only 'variants' (a mapping)")
        merged.update(extra.get("variants") or {})
    merged.update(data.get("variants") or {})
    keys, meta = {}, {}
    for name, value in merged.items():
        if not isinstance(name, str) or not _NAME.match(name) or not isinstance(value or {}, dict):
            raise UsageError(f"profile {path}: variant {name!r} must be a name (letters, digits, '_', '.', '+', "
                             "'-') mapping to the keys it sets")
        value = dict(value or {})
        if "set" in value or "config_file" in value:
            unknown = set(value) - _VARIANT_KEYS
            if unknown or not isinstance(value.get("set") or {}, dict):
                raise UsageError(f"profile {path}: variant {name!r}: unknown key(s) {sorted(unknown)} (a variant with "
                                 f"'set' may have {sorted(_VARIANT_KEYS)}), or 'set' is not a mapping")
            keys[name] = {**_config_file_keys(value.get("config_file"), path), **dict(value.get("set") or {})}
            meta[name] = {k: str(value[k]) for k in ("model", "group", "label") if value.get(k) is not None}
        else:
            keys[name] = value
    return keys, meta


def _str_list(value, what, where) -> list:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and _NAME.match(v) for v in value):
        raise UsageError(f"{where}: '{what}' must be a list of names, got {value!r}")
    return list(value)


def _int_list(value, what, where) -> list:
    if isinstance(value, (int, str)):
        value = [value] if isinstance(value, int) else [v for v in value.split(",") if v]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise UsageError(f"{where}: '{what}' must be a list of integers, got {value!r}") from None


def run_overrides(profile: Profile, model: str, seed: int, variant_keys=None, extra=None) -> dict:
    """The overrides one run passes to ``runner.run`` (see the module docstring for the order)."""
    out = dict(profile.config)
    out.update(profile.model_config.get(model, {}))
    out.update(variant_keys or {})
    out.update(extra or {})
    out["seed"] = int(seed)
    return out


def make_spec(profile: Profile, model: str, dataset: str, seed: int, variant: str = "",
              variant_keys=None, extra=None) -> RunSpec:
    if variant and not _NAME.match(variant):
        raise UsageError(f"variant name {variant!r} must be letters, digits, '_', '.', '+' or '-'")
    return RunSpec(model, dataset, int(seed), profile.name, variant,
                   json.dumps(run_overrides(profile, model, seed, variant_keys, extra), sort_keys=True))


def trains_nothing(model: str) -> bool:
    """A model fitted in one pass without an optimiser (the reference rules, RecBole's Pop and ItemKNN): the seed
    does not change it, so it is planned with the first seed only. Unknown names count as learned models (the run
    reports them)."""
    try:
        return is_one_pass(find_model(model))
    except UsageError:
        return False


def plan(profile: Profile, models=None, datasets=None, seeds=None, extra=None, variants=None) -> list:
    """Model x dataset x seed runs. Order: dataset, then the i-th seed of every model, then models in the
    given order; so the first seed of the whole model list on the first dataset finishes first. A model that
    trains nothing gets the first seed only (``trains_nothing``). ``variants`` (names of the profile's
    ``variants:``): the same runs under each variant's keys instead, stored as ``<model>--<variant>``."""
    models = list(models or profile.models)
    datasets = list(datasets or profile.datasets)
    if not models:
        raise UsageError(f"profile '{profile.name}' lists no models; pass --models")
    if not datasets:
        raise UsageError(f"profile '{profile.name}' lists no datasets; pass --datasets")
    unknown = [v for v in variants or [] if v not in profile.variants]
    if unknown:
        raise UsageError(f"profile '{profile.name}' has no variant(s) {unknown}; its variants: "
                         f"{sorted(profile.variants) or 'none'}")
    for variant in variants or []:
        only = profile.variant_meta.get(variant, {}).get("model")
        if only and only not in models:
            raise UsageError(f"variant {variant!r} of profile '{profile.name}' is a variant of {only} only: "
                             f"add {only} to --models")
    specs = []
    for variant in list(variants or []) or [""]:
        keys = profile.variants.get(variant) if variant else None
        only = profile.variant_meta.get(variant, {}).get("model")
        for dataset in datasets:
            seed_lists = {m: list(seeds or profile.seeds_for(m, dataset))[: 1 if trains_nothing(m) else None]
                          for m in models}
            for i in range(max(len(s) for s in seed_lists.values())):
                for model in models:
                    if i < len(seed_lists[model]) and (not only or model == only):
                        specs.append(make_spec(profile, model, dataset, seed_lists[model][i], variant, keys, extra))
    return specs


def plan_labels(profile: Profile, labels, datasets=None, seeds=None) -> list:
    """The runs of table labels: ``M`` (the model as the profile has it) or ``M[variant]`` (one of the profile's
    variants of ``M``, as ``RunSpec.label`` writes it), in the given order; ``plan`` for each."""
    specs = []
    for label in labels:
        found = _LABEL.fullmatch(label)
        if not found:
            raise UsageError(f"{label!r} is not a model or model[variant] name")
        model, variant = found.group(1), found.group(2)
        specs += plan(profile, [model], datasets, seeds, variants=[variant] if variant else None)
    return specs


def dataset_note(name: str) -> str:
    """What a table must say about a dataset's provenance: the ``table_note`` of ``props/dataset/<name>.yaml``
    (e.g. Tmall: another preprocessing than the paper's; OR: the order inside an invoice), or ``""``."""
    path = os.path.join(PROPS_DIR, "dataset", f"{name}.yaml")
    if not os.path.isfile(path):
        return ""
    return str((read_yaml(path) or {}).get("table_note") or "").strip()
