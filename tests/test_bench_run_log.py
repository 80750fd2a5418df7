"""The benchmark's run log (recbole_famous.bench.runs): appended to on every start, so a resumed run keeps the
lines of its earlier epochs, and read while the run trains for a line per validated epoch."""
import json
import os

from recbole_famous.bench import runs

LINE = ("06:54:50 INFO \x1b[1;32mepoch {e} evaluating\x1b[0m [\x1b[1;34mtime\x1b[0m: 13.16s, "
        "\x1b[1;34mvalid_score\x1b[0m: {s:.6f}]\n")


def test_epoch_lines_read_recboles_coloured_log():
    text = LINE.format(e=4, s=0.0915) + "valid result: \n ndcg@10 : 0.0915\n" + LINE.format(e=5, s=0.09)
    assert runs.epoch_lines(text) == [(4, 0.0915), (5, 0.09)]
    assert runs.epoch_lines("epoch 3 training [time: 1.0s, train loss: 2.0]\n") == []


def test_a_second_start_appends_to_the_log_and_epochs_are_echoed(tmp_path):
    log, out = str(tmp_path / "seed1.log"), str(tmp_path / "seed1.json")
    job = tmp_path / "seed1.job.json"
    job.write_text(json.dumps({"spec": {}, "paths": {}, "threads": 1}))  # not a valid job: the worker fails fast
    (tmp_path / "seed1.lock").write_text("0")
    with open(log, "w") as f:
        f.write("earlier start\n" + LINE.format(e=0, s=0.05))
    said = []
    for _ in range(2):
        assert runs.launch_subprocess(str(job), out, log, echo=said.append, poll_seconds=0.2) != 0
    text = open(log).read()
    assert text.startswith("earlier start\n" + LINE.format(e=0, s=0.05))  # nothing of the first start lost
    assert text.count("start of seed1.job.json ===") == 2
    assert not os.path.exists(out) and said == []  # the old epoch is not echoed again, the failed starts had none


def test_echo_reads_only_whole_new_lines(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(LINE.format(e=0, s=0.05) + LINE.format(e=1, s=0.06)[:30])
    said = []
    offset = runs.echo_epochs(str(log), 0, said.append)
    assert said == ["  epoch 0: valid score 0.0500"] and offset == len(LINE.format(e=0, s=0.05).encode())
    with open(log, "a") as f:
        f.write(LINE.format(e=1, s=0.06)[30:])
    runs.echo_epochs(str(log), offset, said.append)
    assert said[-1] == "  epoch 1: valid score 0.0600"


def test_a_lock_whose_pid_was_reused_after_a_restart_is_stale(tmp_path):
    import subprocess
    import sys
    import time

    lock = tmp_path / "seed1.lock"
    lock.write_text(str(os.getpid()))  # this process, started before the lock: live
    assert runs.lock_is_live(str(lock))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(f"999999999 {other.pid}")
        assert runs.lock_is_live(str(lock))  # written after it started: its run
        past = time.time() - 3600
        os.utime(lock, (past, past))  # the same number, but the lock is older than the process
        assert not runs.lock_is_live(str(lock))
        assert runs.process_start(other.pid) > past
    finally:
        other.kill()
        other.wait()
    assert not runs.lock_is_live(str(lock)) and not runs.lock_is_live(str(tmp_path / "none.lock"))
