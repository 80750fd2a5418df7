"""``run_recbole_famous.py tune``: hyper-parameter search in RecBole's conventions (``recbole_famous.tuning``);
needs ``pip install -e ".[tune]"``.

``python run_recbole_famous.py tune --model=M --dataset=D --params_file=hyper/M.hyper [--algo=bayes|random|
exhaustive] [--max_evals=N] [--config_files=...] [--output_dir=DIR] [--no_default] [--key=value ...]``

The params file is RecBole's ``run_hyper.py`` format, one parameter a line (``#`` starts a comment)::

    learning_rate loguniform -8,0        # exp(uniform(-8, 0)), as hyperopt's hp.loguniform (bounds are logs)
    hidden_dropout_prob uniform 0.1,0.5
    n_layers quniform 1,3,1              # integer bounds and step give integer values
    spe_mode choice ['exact','sampled']  # a Python literal list

Output in ``--output_dir`` (default ``<results_dir>/tuning/<model>-<dataset>-<params file name>``):
``trials/<n>.json`` (one finished trial each, written atomically), ``results.md`` / ``results.csv`` (every trial,
rewritten after each), ``best.yaml`` (the best setting, for ``--config_files``), ``runs/<trial>/`` (each trial's
run log and result.json), ``search.json`` (what the search is). Running the same command again continues the
search: hyperopt is replayed with the same seed, and each trial already on disk is read back, not rerun.
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
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--tune_seed", type=int, default=None, help="hyperopt's seed (default: the config's seed)")
    parser.add_argument("--no_default", action="store_true", help="do not run the config's own values first")


def run(args, overrides) -> int:
    from recbole_famous.tuning import Search

    search = Search(args.model, args.dataset, args.params_file, args.config_files.split(), overrides,
                    algo=args.algo, max_evals=args.max_evals, output_dir=args.output_dir,
                    include_default=not args.no_default, seed=args.tune_seed)
    search.run()
    return 0
