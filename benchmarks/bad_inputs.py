"""Tries the command line with bad inputs and prints what each gave (exit code, the last line on stderr).

Not a test (the tests assert the same behaviour one case at a time); this is the list for a reader or a closing
note, run against real data: a 120-user slice of RecBole's packaged ml-100k and a SASRec checkpoint trained on it
for one epoch here. Every case must end with a one-line message and exit code 2 (1 for a diverged run), never a
traceback; the script says so at the end.

    python benchmarks/bad_inputs.py            # ~1-2 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from recbole_famous.data.slices import write_ml100k_slice

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, os.path.join(REPO, "run_recbole_famous.py")]


def make_slice(root: str, users: int = 120) -> None:
    write_ml100k_slice(root, "mlslice", users)


def call(args, stdin=None, cwd=None):
    out = subprocess.run(CLI + args, capture_output=True, text=True, input=stdin, cwd=cwd, timeout=600)
    err_lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    return out.returncode, (err_lines[-1] if err_lines else ""), "Traceback" in out.stderr, out.stdout


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="bad_inputs_")
    data = os.path.join(tmp, "data")
    make_slice(data)
    base = [f"--data_path={data}", "--dataset=mlslice", "--MAX_ITEM_LIST_LENGTH=10", "--show_progress=False",
            f"--checkpoint_dir={tmp}/saved", f"--results_dir={tmp}/results", "--state=WARNING"]
    code, _, _, stdout = call(["--model=SASRec", "--epochs=1"] + base)
    assert code == 0, "the reference SASRec run failed"
    ckpt = sorted(f for f in os.listdir(f"{tmp}/saved") if f.endswith(".pth") and not f.endswith(".resume.pth"))[0]
    ckpt = os.path.join(tmp, "saved", ckpt)

    broken_yaml = os.path.join(tmp, "broken.yaml")
    with open(broken_yaml, "w") as f:
        f.write("epochs: [1, 2\n")
    not_ckpt = os.path.join(tmp, "notes.pth")
    with open(not_ckpt, "w") as f:
        f.write("not a checkpoint")
    empty_dir = os.path.join(tmp, "emptydata")
    os.makedirs(os.path.join(empty_dir, "nothing"))
    histories = json.dumps({"known": ["242", "302"], "unknown": ["no-such-item"], "empty": [],
                            "long": [str(i) for i in range(1, 200)], "not_a_list": 42})

    cases = [
        ("unknown model", ["--model=NoSuchRec"] + base),
        ("unknown dataset", ["--model=SASRec", "--dataset=NoSuchData", f"--data_path={data}"]),
        ("dataset folder without its .inter", ["--model=SASRec", "--dataset=nothing", f"--data_path={empty_dir}"]),
        ("missing yaml", ["--model=SASRec", "--config_files=missing.yaml"] + base),
        ("broken yaml", ["--model=SASRec", f"--config_files={broken_yaml}"] + base),
        ("unknown metric", ["--model=SASRec", "--metrics=[Recall,Nope]"] + base),
        ("--eval_only without --checkpoint", ["--eval_only"] + base),
        ("checkpoint file missing", [f"--checkpoint={tmp}/saved/none.pth", "--eval_only"]),
        ("file that is not a checkpoint", [f"--checkpoint={not_ckpt}", "--eval_only"]),
        ("checkpoint with another model", [f"--checkpoint={ckpt}", "--eval_only", "--model=GRU4Rec"]),
        ("checkpoint with a changed config", [f"--checkpoint={ckpt}", "--eval_only", "--hidden_size=32"]),
        ("resume with a changed training config", [f"--resume={ckpt}", "--learning_rate=0.5"]),
        ("prepare: unknown dataset, no source", ["--model=SASRec", "--dataset=Arts", f"--data_path={tmp}/none"]),
        ("nproc 0", ["--model=SASRec", "--nproc=0"] + base),
        ("recommend without histories", ["recommend", f"--checkpoint={ckpt}"]),
    ]
    print(f"{'case':<42} {'exit':>4}  traceback  message")
    bad = 0
    for name, args in cases:
        code, line, tb, _ = call(args)
        bad += tb or code == 0
        print(f"{name:<42} {code:>4}  {'YES' if tb else 'no':<9}  {line[:150]}")
    code, line, tb, stdout = call(["recommend", f"--checkpoint={ckpt}", "--histories=-", "--top_n=3"], stdin=histories)
    print(f"{'recommend: unknown / empty / long / not a list':<42} {code:>4}  {'YES' if tb else 'no':<9}  {line[:150]}")
    for answer in json.loads(stdout):
        keys = ("user", "items", "unknown_items", "truncated", "fallback", "error")
        print("    " + json.dumps({k: answer.get(k) for k in keys}))
    bad += tb
    print(f"\n{len(cases) + 1} cases, {bad} with a traceback or a wrong success")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
