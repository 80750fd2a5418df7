"""``run_recbole_famous.py bench COMMAND`` (also ``python -m recbole_famous.bench COMMAND``): the benchmark.

  run        train and test a model list under a budget profile, one run at a time, resumable
  status     list the planned runs and which have finished, failed, are running or pending
  table      the Table-2-style Markdown and CSV (with efficiency columns) from finished runs
  compare    Table 2 against the best baseline chosen on validation, a paired test over test users
             (per-user NDCG@10 from the checkpoints), validation learning curves; runs may still be going
  ablations  Table 3 / Figure 4 / Table 5 (and the Figure-2 single encoders) as FamouSRec variants
  analyze    Figure 1, Figure 2, expert shares and Appendix A.4 from trained checkpoints
  routing    the routing study's table: each FamouSRec variant's scores and routing diagnostics (its probe reads
             the checkpoints), paired against a reference variant per seed (props/bench/routing.yaml)
  breakdown  where ours wins and loses against other models: the paired per-user test values of compare, by
             test-history length and by the test item's training count (bench/breakdown.py)
  synth      the synthetic study's tables: per behaviour type, expert shares and NDCG@10 (props/bench/synth.yaml)
  variants   each model under a profile's variants against its own profile run, same seed, on validation: is a
             setting's gain one model's own? (bench/variant_pairs.py; records only)
  headroom, a4, by-period
             probes of given checkpoints (recbole_famous/cli/probes.py)
  archive    copy finished run records (and per-user test metrics) to a committed folder (archive.py)
  restore    copy archived run records back into --out on a new machine: run skips them, table uses them

Bad input gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import shlex
import time

from recbole_famous.bench import runs
from recbole_famous.cli import probes
from recbole_famous.errors import UsageError

NAME = "bench"
HELP = ("the benchmark: run, status, table, compare, archive, restore; studies: ablations, analyze, breakdown, "
        "routing, synth, variants")
DESCRIPTION = "The benchmark: model lists x datasets x seeds under a budget profile (props/bench/NAME.yaml)."
EPILOG = __doc__.split("\n\n")[1]
INTERRUPTED = "finished runs are kept; rerun the same command to resume"

DEFAULT_DOCS = os.path.join("docs", "results")


def _list(text):
    return [t for t in (text or "").split(",") if t] or None


def _seeds(text):
    try:
        return [int(s) for s in _list(text)] if text else None
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {text!r}") from None


def _sets(pairs):
    """``--set KEY=VALUE`` pairs, read by the runner's own parser (``config.parse_overrides``)."""
    from recbole_famous.config import parse_overrides

    try:
        return parse_overrides(pairs, prefix="")
    except UsageError:
        bad = next(p for p in pairs if "=" not in p or p.startswith("="))
        raise UsageError(f"--set takes KEY=VALUE, got {bad!r}") from None


def _threads(args, profile) -> int:
    """``bench run --threads N``, else the profile's ``threads``."""
    if args.threads is None:
        return int(profile.threads or 1)
    if args.threads < 1:
        raise UsageError(f"--threads must be a positive number of torch threads, got {args.threads}")
    return args.threads


def _command(argv) -> str:
    return "python -m recbole_famous.bench " + " ".join(shlex.quote(a) for a in argv)


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, datasets=True):
        sp.add_argument("--profile", default="cpu", help="budget profile: props/bench/NAME.yaml or a yaml path")
        sp.add_argument("--out", default=runs.default_out(),
                        help=f"the run store: records, logs, checkpoints (default ${runs.STORE_ENV} if set, else "
                             "results/bench)")
        sp.add_argument("--docs", default=DEFAULT_DOCS, help="where tables and plots go (default docs/results)")
        if datasets:
            sp.add_argument("--datasets", help="comma-separated, default: the profile's")

    for name in ("run", "status", "table", "compare", "archive", "restore"):
        sp = sub.add_parser(name)
        common(sp)
        sp.add_argument("--models", help="comma-separated model names, default: the profile's")
        sp.add_argument("--seeds", help="comma-separated seeds, default: the profile's (per model)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra RecBole key for every run")
        sp.add_argument("--variants", help="comma-separated names of the profile's variants: those runs instead, "
                                           "stored and tabled apart (table2_<datasets>_<variants>)")
        if name == "run":
            sp.add_argument("--retry-failed", action="store_true", help="rerun runs that failed before")
            sp.add_argument("--threads", type=int, metavar="N",
                            help="torch threads each run trains with (default: the profile's `threads`), e.g. 2 "
                                 "for one run alone on two cores; inference is still timed with the profile's")
            sp.add_argument("--no-archive", action="store_true",
                            help="do not archive each finished run (record and per-user test metrics) into "
                                 "<--docs>/<profile>/records right away (as `archive --peruser` does)")
        if name in ("table", "compare"):
            sp.add_argument("--ours", default="FamouSRec", help="the model whose improvement is reported")
        if name in ("archive", "restore"):
            sp.add_argument("--records", help="the archive folder (default: <--docs>/<profile>/records)")
        if name == "archive":
            sp.add_argument("--peruser", action="store_true",
                            help="compute missing per-user test metrics from the runs' checkpoints first")
        if name == "compare":
            sp.add_argument("--cache", help="folder for the per-user test metrics (default: next to each run record "
                                            "under --out)")
    sp = sub.add_parser("ablations")
    common(sp, datasets=False)
    sp.add_argument("--dataset", default="Instruments")
    sp.add_argument("--seeds", help="comma-separated, default: the profile's seeds for FamouSRec")
    sp.add_argument("--only", help="comma-separated groups: table3, figure4, figure2, table5 (the paper's), or the "
                                   "profile's own (default: all of the profile's)")
    sp.add_argument("--report-only", action="store_true", help="write the tables from finished runs, train nothing")
    sp.add_argument("--retry-failed", action="store_true")
    sp = sub.add_parser("breakdown")
    common(sp, datasets=False)
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--models", required=True, help="comma-separated: the other models, each against --ours (a "
                                                    "variant as M[variant])")
    sp.add_argument("--seeds", help="comma-separated seeds of --ours, default: the profile's")
    sp.add_argument("--ours", default="FamouSRec", help="a model, or one of the profile's variants as M[variant] "
                                                        "(its file: breakdown_<dataset>_<variant>[_valid].md)")
    sp.add_argument("--split", default="test", choices=("test", "valid"),
                    help="whose users and targets: test (the paired tests' values) or valid (computed once from the "
                         "checkpoints, breakdown_<dataset>_valid.md)")
    sp = sub.add_parser("variants")
    common(sp, datasets=False)
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--runs", required=True, help="comma-separated M[variant] (a model under one of the profile's "
                                                  "variants), each paired with the profile's own M")
    sp.add_argument("--seeds", help="comma-separated, default: each model's seeds in the profile")
    sp.add_argument("--title", help="the table's heading (default: dataset and profile)")
    sp = sub.add_parser("analyze")
    common(sp, datasets=False)
    sp.add_argument("--dataset", default="Instruments")
    sp.add_argument("--seed", type=int, help="which seed's checkpoints (default: the profile's first)")
    probes.add_arguments(sub)  # headroom, a4, by-period: probes of given checkpoints
    for study in ("synth", "routing"):  # the studies whose probe reads each variant's checkpoints
        sp = sub.add_parser(study)
        common(sp, datasets=False)
        sp.add_argument("--dataset", help="default: the profile's first")
        sp.add_argument("--variants", help="comma-separated, 'paper' for the profile's own FamouSRec run (default: "
                                           f"it and every variant of the profile's group '{study}')")
        sp.add_argument("--seeds", help="comma-separated, default: the profile's seeds for FamouSRec")
    # the routing study's own (sp is its parser, the loop's last)
    sp.add_argument("--reference", default="paper", help="the variant the others are paired against")
    sp.add_argument("--title", help="the table's heading (default: dataset and budget)")


def _variant_tag(args) -> str:
    """``_grouped`` for a command given ``--variants grouped`` (``_a_b`` for two), else ``""``."""
    return "".join("_" + v for v in _list(getattr(args, "variants", None)) or [])


def _dataset_tag(args) -> str:
    """``_OR`` / ``_Arts_Instruments`` for a command given ``--datasets``, then ``_variant_tag``, else ``""``: its
    files' suffix."""
    named = sorted(_list(getattr(args, "datasets", None)) or [])
    return ("_" + "_".join(named) if named else "") + _variant_tag(args)


def _docs_dir(args, profile) -> str:
    return os.path.join(args.docs, profile.name)


def _archiver(args, profile, echo):
    """``on_finished`` of ``bench run``: archive the run just finished, with its per-user test metrics computed
    from its checkpoint while this machine has it (``archive.py``), into the committed records folder. The
    output folder is git-ignored and goes with the machine; the records folder is part of the working tree."""
    from recbole_famous.bench import archive

    folder = os.path.join(_docs_dir(args, profile), "records")

    def on_finished(spec):
        import torch

        torch.set_num_threads(int(profile.threads or 1))  # the other cores run the other benchmark processes
        counts = archive.archive([spec], args.out, folder, with_peruser=True, echo=echo)
        echo(f"  archived into {folder}: {counts}")

    return on_finished


def _archive_derived(specs, args, profile, echo) -> None:
    """Archive ``specs``' finished records with the inference results just cached beside them (``archive.py``),
    so that the report regenerates where the checkpoints are gone."""
    from recbole_famous.bench import archive

    folder = os.path.join(_docs_dir(args, profile), "records")
    counts = archive.archive(specs, args.out, folder, echo=echo)
    echo(f"archived into {folder}: {counts}")


def _write_table(records, args, profile, argv, echo) -> None:
    from recbole_famous.bench import table

    if not records:
        echo("no finished runs yet: no table")
        return
    order = list(profile.models) + [m for m in getattr(args, "models_list", None) or [] if m not in profile.models]
    out = _docs_dir(args, profile)
    stem, lost = table.stem_keeping(out, records, "table2" + _dataset_tag(args))
    if stem is None:
        echo(f"no table written: the tables in {out} hold {table.brief(lost)}, whose run records are not under "
             f"{args.out}; bring them back first (`python -m recbole_famous.bench restore --profile {profile.name}`)")
        return
    if lost:
        echo(f"the table in {out} also holds runs of {table.brief(lost)}, whose run records are not under {args.out}: "
             f"it is kept, and these runs' table goes to {stem}.md")
    from recbole_famous.bench.plan import dataset_note

    notes = {ds: dataset_note(ds) for ds in {r["spec"]["dataset"] for r in records}}
    paths = table.write(records, out, profile.name, profile.description, getattr(args, "ours", "FamouSRec"), order,
                        stem=stem, notes=notes)
    with open(paths[0], "a", encoding="utf-8") as f:
        f.write(f"\nMade by: `{_command(argv)}` (from the run records under `{args.out}`).\n")
    echo("wrote " + ", ".join(paths))


def _check_datasets(specs, out_dir: str) -> None:
    """Each dataset that a run still to do needs must be there (or be prepared now, by the data layer), before
    any run starts: a ``UsageError`` saying how, instead of one failed run per model."""
    from recbole_famous.bench import runs
    from recbole_famous.pipeline import build_config, check_dataset

    seen = set()
    for spec in specs:
        if spec.dataset in seen or runs.state(out_dir, spec) == "finished":
            continue
        seen.add(spec.dataset)
        overrides = {k: v for k, v in spec.overrides_dict().items() if k in ("data_path", "source_path")}
        check_dataset(build_config(spec.model, spec.dataset, overrides={**overrides, "state": "ERROR"}))


def _progress(curve, now: float | None = None) -> str:
    """``status``'s note on a run's epochs: from its record, or from its resume checkpoint while it is going."""
    if not curve or not curve["scores"]:
        return ""
    best = curve["best_epoch"]
    so_far = "" if curve["source"] == "finished" else " so far"
    text = f"  {curve['epochs_run'] or len(curve['scores'])} epochs{so_far}"
    if best is not None and best in curve["scores"]:
        text += f", best valid {curve['scores'][best]:.4f} at epoch {best}"
    if curve["source"] != "finished":
        text += _to_go(curve, time.time() if now is None else now)
    return text


def _to_go(curve, now: float) -> str:
    """For a run not finished: its epochs still to train, at the least (its patience runs out with no gain) and
    at the most (its epoch cap), in hours of training at its mean epoch so far; and when its last epoch was saved,
    so that a run that no longer moves shows."""
    from recbole_famous.bench import patience

    text = ""
    seconds = curve.get("epoch_seconds") or []
    if curve.get("max_epochs") is not None and curve.get("patience") is not None:
        left = patience.remaining(curve["scores"], curve["patience"], curve["max_epochs"])
        text += f"; {left['at_least']}-{left['at_most']} epochs to go"
        if seconds:
            per = sum(seconds) / len(seconds)
            text += (f" at {_duration(per)} of training each "
                     f"({_duration(left['at_least'] * per)} to {_duration(left['at_most'] * per)})")
    if curve.get("saved_at") is not None:
        text += f"; last epoch saved {_duration(max(0.0, now - curve['saved_at']))} ago"
    return text


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _union(first, second) -> list:
    """The runs of ``first`` then those of ``second`` not in it (same key = same run record), in order."""
    seen, out = set(), []
    for spec in list(first) + list(second):
        if spec.key not in seen:
            seen.add(spec.key)
            out.append(spec)
    return out


def run(args, overrides=None) -> int:
    return _dispatch(args, args.argv, lambda msg: print(msg, flush=True))


def _dispatch(args, argv, echo) -> int:
    from recbole_famous.bench import plan, runs

    if args.command in probes.NAMES:  # they read the checkpoints they are given, not a profile's runs
        return probes.run(args, _command(argv), echo)

    profile = plan.load_profile(args.profile)
    if args.command in ("run", "status", "table", "compare", "archive", "restore"):
        args.models_list = _list(args.models)
        specs = plan.plan(profile, args.models_list, _list(args.datasets), _seeds(args.seeds), _sets(args.set),
                          _list(args.variants))
        if args.command in ("archive", "restore"):
            from recbole_famous.bench import archive

            folder = args.records or os.path.join(_docs_dir(args, profile), "records")
            runs_dir = os.path.join(args.out, "runs", profile.name)
            if args.command == "archive":
                counts = archive.archive(specs, args.out, folder, args.peruser, echo)
                echo(f"archive {runs_dir} -> {folder}: {counts}")
            else:
                counts = archive.restore(specs, folder, args.out, echo)
                echo(f"restore {folder} -> {runs_dir}: {counts}")
            return 0
        if args.command == "compare":
            from recbole_famous.bench import compare

            paths, failed = compare.write(profile, specs, args.out, _docs_dir(args, profile), _command(argv),
                                          args.ours, args.models_list or list(profile.models), args.cache, echo,
                                          tag=_dataset_tag(args),
                                          variant_tag=_variant_tag(args))
            echo("wrote " + ", ".join(paths))
            if failed:
                echo("a per-user check failed: those p-values are left out (see the Markdown)")
            return 1 if failed else 0
        if args.command == "status":
            from recbole_famous.bench import compare

            for entry in compare.entries(specs, args.out):
                spec = entry["spec"]
                echo(f"{entry['state']:9s} {spec.dataset:12s} {spec.label:28s} seed {spec.seed}"
                     + _progress(compare.valid_curve(entry, args.out)))
            return 0
        if args.command == "run":
            _check_datasets(specs, args.out)
            counts = runs.run_all(specs, args.out, args.retry_failed, echo, threads=_threads(args, profile),
                                  on_finished=None if args.no_archive else _archiver(args, profile, echo),
                                  timing_threads=profile.threads)
            echo(f"benchmark: {counts}")
        # the profile's table covers every finished run of the profile, not only this command's selection
        # (a run of one model must not leave a table of that model alone)
        variants = _list(args.variants)
        every = _union(plan.plan(profile, extra=_sets(args.set), variants=variants), specs)
        if _list(args.datasets):  # --datasets names the table's datasets (table2_<datasets>.md)
            every = [s for s in every if s.dataset in _list(args.datasets)]
        paths = [runs.record_path(args.out, s) for s in every]
        # and every other finished run of the profile in the store (other seeds, models run by other commands)
        paths += [p for p in runs.finished_paths(args.out, profile.name, _list(args.datasets) or None, variants)
                  if p not in paths]
        records = [r for r in (runs.load_record(p) for p in paths) if r]
        _write_table(records, args, profile, argv, echo)
        return 0 if args.command == "table" or counts["failed"] == 0 else 1
    if args.command == "ablations":
        from recbole_famous.bench import ablations

        groups = ablations.check_groups(_list(args.only), profile)
        seeds = _seeds(args.seeds) or list(profile.seeds_for(ablations.MODEL, args.dataset))
        failed = 0
        if not args.report_only:
            counts = runs.run_all(ablations.specs(profile, args.dataset, seeds, groups), args.out,
                                  args.retry_failed, echo, threads=profile.threads,
                                  on_finished=_archiver(args, profile, echo))  # archived as each finishes
            failed = counts["failed"]
        paths = ablations.report(profile, args.dataset, seeds, args.out, _docs_dir(args, profile), groups, echo)
        with open(paths[0], "a", encoding="utf-8") as f:
            f.write(f"\nMade by: `{_command(argv)}`.\n")
        echo("wrote " + ", ".join(paths))
        if "table5" in groups:  # its forced-expert results, computed from checkpoints this machine may lose
            _archive_derived(ablations.specs(profile, args.dataset, seeds, ("table5",)), args, profile, echo)
        return 1 if failed else 0
    if args.command == "breakdown":
        from recbole_famous.bench import breakdown

        others = _list(args.models)
        specs = plan.plan_labels(profile, [args.ours, *others], [args.dataset], _seeds(args.seeds))
        path = breakdown.write(specs, args.out, _docs_dir(args, profile), args.dataset, args.ours, others,
                               _command(argv), echo, args.split)
        echo(f"wrote {path}")
        if args.split != "test":  # its per-user values, computed from checkpoints this machine may lose
            _archive_derived(specs, args, profile, echo)
        return 0
    if args.command == "variants":
        from recbole_famous.bench import variant_pairs

        title = args.title or f"{args.dataset}: variants against the profile's own runs (profile {profile.name})"
        paths = variant_pairs.write(profile, args.dataset, _list(args.runs), _seeds(args.seeds), args.out,
                                    _docs_dir(args, profile), title, _command(argv))
        echo("wrote " + ", ".join(paths))
        return 0
    if args.command == "analyze":
        from recbole_famous.bench import report

        seed = args.seed if args.seed is not None else profile.seeds_for("FamouSRec", args.dataset)[0]
        paths = report.analyze(profile, args.dataset, seed, args.out, _docs_dir(args, profile), _command(argv), echo)
        echo("wrote " + ", ".join(paths))
        return 0
    if args.command in ("routing", "synth"):
        return _study(args, profile, argv, echo)
    raise UsageError(f"unknown command {args.command}")


def _study(args, profile, argv, echo) -> int:
    """``bench routing`` / ``bench synth``: a study's table from the finished runs of its variants, each read by the
    study's probe (``bench/routing.py``, ``bench/synth.py``)."""
    from recbole_famous.bench import plan, routing, synth

    study = routing if args.command == "routing" else synth
    dataset = args.dataset or (profile.datasets or ("Instruments",))[0]
    names = _list(args.variants) or [study.BASE, *profile.variants_in(args.command)]
    seeds = _seeds(args.seeds)
    named = [n for n in names if n != study.BASE]
    specs = (plan.plan(profile, ["FamouSRec"], [dataset], seeds) if study.BASE in names else []) + \
        (plan.plan(profile, ["FamouSRec"], [dataset], seeds, variants=named) if named else [])
    order = {n: i for i, n in enumerate(names)}
    specs.sort(key=lambda s: (order[s.variant or study.BASE], s.seed))
    docs = _docs_dir(args, profile)
    if study is synth:
        paths = synth.write(profile, specs, args.out, docs, dataset, _command(argv), echo)
    else:
        title = args.title or f"{dataset}, {profile.config.get('epochs')} epochs (profile {profile.name})"
        paths = routing.write(specs, args.out, docs, dataset, title, args.reference, _command(argv), echo)
    echo("wrote " + ", ".join(paths))
    if study is routing:  # the probe's diagnostics, computed from checkpoints this machine may lose
        _archive_derived(specs, args, profile, echo)
    return 0
