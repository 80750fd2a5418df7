"""``run_recbole_famous.py tune``: hyper-parameter search in RecBole's conventions (``recbole_famous.tuning``);
needs ``pip install -e ".[tune]"``.

``python run_recbole_famous.py tune --model=M --dataset=D --params_file=hyper/M.hyper [--algo=bayes|random|
exhaustive] [--max_evals=N] [--config_files=...] [--output_dir=DIR] [--no_default] [--key=value ...]``

The params file is RecBole's ``run_hyper.py`` format, one parameter a line (``#`` starts a comment)::

    learning_rate loguniform -8,0        # exp(uniform(-8, 0)), as hyperopt's hp.loguniform (bounds are logs)
    hidden_dropout_prob uniform 0.1,0.5
    n_layers quniform 1,3,1              # integer bounds and step give integer values
    spe_mode choice ['exact','sampled']  # a Python literal list

Output in ``--output_dir`` (default ``<results_dir>/tuning/<model>-<dataset>-<params file name>``, whose name is
the search's): ``results.md`` / ``results.csv`` (every trial, rewritten after each) and ``best.yaml`` (the best
setting, for ``--config_files``). Each trial is a run of the benchmark's run store (``--store``, default
``$RECBOLE_FAMOUS_BENCH_DIR``, else ``results/bench``), in its own process, as ``bench run`` runs them: its record
``runs/tuning/<search>/<dataset>/<model>--trial<n>/seed<N>.json`` (``<model>--default``: the config's own
values), its log under ``logs/``, ``search.json`` (what the search is) beside its trials. Running the same command again
continues the search: hyperopt is replayed with the same seed, each trial already in the store is read back, not
rerun, and a trial killed half-way resumes from its last validated epoch. The trials of a search made before
(``<output_dir>/trials/<n>.json``) are read back too.
"""

from __future__ import annotations

NAME = "tune"
HELP = "hyper-parameter search (RecBole's params file, hyperopt); resumable"
DESCRIPTION = "Hyper-parameter search in RecBole's conventions: a params file, RecBole's HyperTuning and hyperopt."
EPILOG = ("Any other --key=value is a config setting for every trial.\n\n"
          + "\n\n".join(__doc__.split("\n\n")[1:]).replace("``", "'"))
KEY_VALUE = True
INTERRUPTED = "finished trials are kept: run the same command to continue"


def add_arguments(parser) -> None:
    parser.add_argument("--model", "-m", default=None)
    parser.add_argument("--dataset", "-d", default=None)
    parser.add_argument("--params_file", required=True, help="RecBole params file, e.g. hyper/FamouSRec.hyper")
    parser.add_argument("--algo", default="bayes", help="bayes (TPE), random or exhaustive (choice lines only)")
    parser.add_argument("--max_evals", type=int, default=None, help="trials sampled by hyperopt (default 10)")
    parser.add_argument("--config_files", default="", help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    parser.add_argument("--output_dir", default=None, help="the table and best.yaml; its name is the search's")
    parser.add_argument("--store", default=None, help="the run store of the trials (default: $RECBOLE_FAMOUS_BENCH_DIR,"
                        " else results/bench)")
    parser.add_argument("--tune_seed", type=int, default=None, help="hyperopt's seed (default: the config's seed)")
    parser.add_argument("--no_default", action="store_true", help="do not run the config's own values first")


def run(args, overrides) -> int:
    from recbole_famous.tuning import Search

    search = Search(args.model, args.dataset, args.params_file, args.config_files.split(), overrides,
                    algo=args.algo, max_evals=args.max_evals, output_dir=args.output_dir,
                    include_default=not args.no_default, seed=args.tune_seed, store=args.store)
    search.run()
    return 0
