"""``run_recbole_famous.py [train]``: train, validate and test any model (the plugin's or RecBole's) on any dataset,
under the paper's protocol.

Examples:
  python run_recbole_famous.py                                   # default job: default model on ml-100k
  python run_recbole_famous.py --model=SASRec --dataset=Instruments
  python run_recbole_famous.py --model=FamouSRec --dataset=Arts --config_files="a.yaml b.yaml" --epochs=20

Configuration, lowest to highest: RecBole's defaults < props/overall.yaml (the paper's protocol)
< props/model/<Model>.yaml < props/dataset/<Dataset>.yaml < --config_files (in order) < --key=value.
Any RecBole or model key can be set with --key=value (values are read as RecBole reads them: numbers,
lists like "[5,10]", dicts, strings). With no --dataset, props/default_job.yaml (the default job's budget) is
applied before --config_files; it also names the no-training reference rules (reference_rules) whose test metrics
on the same split are printed after the run's, as a yardstick (--reference_rules="[]" skips them).

Output: progress and per-epoch logs, then one table of the best-validation and test metrics; a machine-readable
result (model, dataset, full config, metrics, best epoch, seconds per epoch) in <results_dir>/<run_id>/result.json
(results_dir defaults to results/), next to the run's log; the best model in <checkpoint_dir> (saved/).
Checkpoints: every run saves its best model as <checkpoint_dir>/<run_id>.pth and the state after its last
validated epoch as <run_id>.resume.pth.
  --resume=PATH                     continue an interrupted run (Ctrl-C / SIGTERM keep the checkpoints) with
                                    the result the uninterrupted run would have given; --epochs=N extends it
  --checkpoint=PATH --eval_only     the same as `eval --checkpoint=PATH` (see `eval --help`)
A checkpoint of another model or dataset, or of a changed config, is refused with a message naming what differs.

More than one process (RecBole's distributed mode): --nproc=N [--world_size=W --ip=HOST --port=P
--group_offset=K]; on CPU (use_gpu: False or no CUDA) the processes use gloo, on GPUs NCCL (--gpu_id=0,1,...).

Other subcommands: eval, recommend (serving), tune (hyper-parameter search), bench (the benchmark), data
(datasets); `run_recbole_famous.py COMMAND --help` for each, recbole_famous/cli/ for all.

Exit codes: 0 success, 2 bad input (unknown model or dataset, missing or broken yaml, unknown metric, refused
checkpoint, ...), 1 training stopped on a non-finite loss, 130 / 143 interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

from recbole_famous.errors import UsageError

NAME = "train"
HELP = "train, validate and test a model on a dataset (the default subcommand)"
DESCRIPTION = "Train, validate and test a model (the plugin's or RecBole's) on a dataset, under the paper's protocol."
EPILOG = "\n\n".join(__doc__.split("\n\n")[1:])
KEY_VALUE = True


def add_arguments(parser) -> None:
    parser.add_argument("--model", "-m", default=None, help="model name (default: FamouSRec)")
    parser.add_argument("--dataset", "-d", default=None,
                        help="dataset name (default: ml-100k, RecBole's packaged copy)")
    parser.add_argument("--config_files", default="", help='space-separated yaml files, e.g. "a.yaml b.yaml"')
    parser.add_argument("--checkpoint", default=None, help="a saved model, for --eval_only")
    parser.add_argument("--eval_only", action="store_true", help="evaluate --checkpoint, no training")
    parser.add_argument("--resume", default=None, help="continue the run of this checkpoint")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (distributed mode)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes in all machines (default: nproc)")
    parser.add_argument("--ip", default="localhost", help="address of the machine with rank 0")
    parser.add_argument("--port", type=int, default=None, help="its port (default: a free one, one machine only)")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")


def run(args, overrides) -> int:
    from recbole_famous import pipeline, runner
    from recbole_famous.cli import evaluate

    config_files = args.config_files.split()
    if args.nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {args.nproc}")
    distributed = args.nproc > 1 or args.world_size > 0
    if args.eval_only or args.checkpoint:
        if not (args.eval_only and args.checkpoint):
            raise UsageError("--eval_only needs --checkpoint=PATH, and --checkpoint is for --eval_only "
                             "(to continue training use --resume=PATH)")
        if args.resume or distributed:
            raise UsageError("--eval_only runs alone: drop --resume and --nproc / --world_size")
        return evaluate.run(args, overrides)
    if args.dataset is None and args.resume is None:
        config_files = [pipeline.DEFAULT_JOB_CONFIG] + config_files
    if distributed:
        from recbole_famous import launch

        result = launch.run(args.model, args.dataset, config_files, overrides, nproc=args.nproc,
                            world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset,
                            resume=args.resume)
        if result is None:  # not the machine with rank 0
            return 0
        print(runner.format_result_table(result))
        return 0
    result = runner.run(args.model, args.dataset, config_files, overrides, resume=args.resume)
    references = runner.run_reference_rules(result, config_files, overrides)
    print(runner.format_result_table(result))
    if references:
        print(runner.format_reference_table(result, references))
    return 0
