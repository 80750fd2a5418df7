"""The five source readers on small files written here in each published format: what they
keep, drop and order, and how bad input fails (file and line named, exit 2, nothing written)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_famous.data import DatasetNotPrepared, SOURCE_ENV, ensure_prepared
from recbole_famous.cli import main as cli_main


def main(argv) -> int:
    """``run_recbole_famous.py data ARGV`` in this process."""
    return cli_main(["data", *argv])
from recbole_famous.data.prepare import prepare

REPO = Path(__file__).resolve().parents[1]


def read_inter(out, name):
    lines = (Path(out) / name / f"{name}.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    return [tuple(line.split("\t")) for line in lines[1:]]


def read_map(out, name):
    lines = (Path(out) / name / f"{name}.item_map").read_text().splitlines()
    return dict(line.split("\t") for line in lines[1:])


def by_user(rows, item_map=None):
    seqs = {}
    for u, i, _ in rows:
        seqs.setdefault(u, []).append(item_map[i] if item_map else i)
    return seqs


def run_prepare(tmp_path, source, name="D", fmt=None):
    out = tmp_path / "out"
    prepare(name, str(source), out=str(out), fmt=fmt, echo=None)
    return out


# ---------------------------------------------------------------- user-to-item-list JSON
def test_user_json_keeps_order_and_maps_asins(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "D.inter.json").write_text(json.dumps({"7": [2, 0, 1], "3": [1, 2]}, indent=4))
    (src / "D.item2id").write_text("ASIN_A\t0\nASIN_B\t1\nASIN_C\t2\n")
    out = run_prepare(tmp_path, src)
    rows = read_inter(out, "D")
    assert rows == [("7", "2", "0"), ("7", "0", "1"), ("7", "1", "2"), ("3", "1", "0"), ("3", "2", "1")]
    assert by_user(rows, read_map(out, "D")) == {"7": ["ASIN_C", "ASIN_A", "ASIN_B"], "3": ["ASIN_B", "ASIN_C"]}


@pytest.mark.parametrize("payload, line, words", [
    ('{\n  "0": [1, 2],\n  "1": [3 4]\n}', 3, "malformed JSON"),
    ('{\n  "0": [1, 2],\n  "1": []\n}', 3, "empty sequence"),
    ('{\n  "0": [1, 2],\n  "1": [3, "x9"]\n}', 3, "not a non-negative integer"),
])
def test_user_json_bad_input_names_line(tmp_path, payload, line, words, capsys):
    src = tmp_path / "D.inter.json"
    src.write_text(payload)
    out = tmp_path / "out"
    assert main(["prepare", "D", "--source", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {src}:{line}: ") and words in err and "\n" not in err
    assert not out.exists() or list(out.iterdir()) == []


# ---------------------------------------------------------------- UniSRec split files
HEAD = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def test_unisrec_rebuilds_sequences_from_test_rows(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "D.test.inter").write_text(HEAD + "0\t0 1 2 3\t4\n1\t5 6\t7\n")
    (src / "D.valid.inter").write_text(HEAD + "0\t0 1 2\t3\n1\t5\t6\n")
    (src / "D.item2index").write_text("".join(f"A{i}\t{i}\n" for i in range(8)))
    out = run_prepare(tmp_path, src)
    rows = read_inter(out, "D")
    assert by_user(rows) == {"0": ["0", "1", "2", "3", "4"], "1": ["5", "6", "7"]}
    assert [r[2] for r in rows] == ["0", "1", "2", "3", "4", "0", "1", "2"]
    assert read_map(out, "D")["7"] == "A7"


def test_unisrec_inconsistent_valid_split_is_rejected(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "D.test.inter").write_text(HEAD + "0\t0 1 2 3\t4\n1\t5 6\t7\n")
    (src / "D.valid.inter").write_text(HEAD + "0\t0 1 2\t3\n1\t5\t9\n")
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    assert f"{src / 'D.valid.inter'}:3: user '1'" in capsys.readouterr().err


def test_unisrec_malformed_row(tmp_path, capsys):
    src = tmp_path / "D.test.inter"
    src.write_text(HEAD + "0\t0 1 2 3\t4\n1\t5 6 7\n")
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    assert f"{src}:3: expected 3 tab-separated fields, got 2" in capsys.readouterr().err


# ---------------------------------------------------------------- UCI Online Retail
OR_HEAD = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def or_rows(invoice, codes, date, qty=1):
    return "".join(f'{invoice},{c},"THING, {c}",{qty},{date},1.0,17850,United Kingdom\n' for c in codes)


def test_online_retail_recipe(tmp_path):
    codes = ["A", "B", "C", "D", "E"]
    text = OR_HEAD
    text += or_rows("1", ["E", "D", "C", "B", "A"], "2010-12-01 08:26")
    text += or_rows("1", ["E"], "2010-12-01 08:26")            # exact duplicate tuple: dropped
    text += or_rows("1", ["E"], "2010-12-01 08:26", qty=3)     # other quantity: counts again
    text += "1,A,,1,2010-12-01 08:26,1.0,17850,United Kingdom\n"  # empty Description: dropped
    text += or_rows("2", codes, "12/2/2010 9:00")               # UCI's original date format
    text += or_rows("3", codes, "2010-12-03 10:00")
    text += or_rows("4", codes, "2010-12-04 10:00")
    text += or_rows("5", codes + ["Z"], "2010-12-05 10:00")     # Z occurs once: five-core drops it
    text += or_rows("6", ["A", "B"], "2010-12-06 10:00")        # 2 items: five-core drops the invoice
    src = tmp_path / "retail.csv.gz"
    src.write_bytes(gzip.compress(text.encode()))
    out = tmp_path / "out"
    prepare("D", str(src), out=str(out), echo=None, options={"invoice_order": "file"})
    rows = read_inter(out, "D")
    seqs = by_user(rows, read_map(out, "D"))
    assert seqs == {"1": ["E", "D", "C", "B", "A", "E"], "2": codes, "3": codes, "4": codes, "5": codes}
    assert {r[2] for r in rows if r[0] == "1"} == {"1291191960"}
    assert {r[2] for r in rows if r[0] == "2"} == {"1291280400"}


def _or_source(tmp_path):
    """12 invoices of 6 rows at one time each, plus a second time in invoice 1 (a later batch of rows)."""
    codes = ["A", "B", "C", "D", "E", "F"]
    text = OR_HEAD
    for n in range(1, 13):
        text += or_rows(str(n), codes[n % 6:] + codes[: n % 6], f"2010-12-{n:02d} 10:00")
    text += or_rows("1", ["F", "E"], "2010-12-01 11:00")
    src = tmp_path / f"retail{len(list(tmp_path.iterdir()))}.csv"
    src.write_text(text)
    return src


def _sequences(tmp_path, options):
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    info = prepare("D", str(_or_source(tmp_path)), out=str(out), echo=None, options=options)
    rows = read_inter(out, "D")
    return by_user(rows, read_map(out, "D")), info, rows


def test_online_retail_invoice_order_shuffles_ties_only(tmp_path):
    file_order, info_file, _ = _sequences(tmp_path, {"invoice_order": "file"})
    shuffled, info, rows = _sequences(tmp_path, None)  # the default: shuffled, seed 2020
    again, _, _ = _sequences(tmp_path, None)
    other_seed, _, _ = _sequences(tmp_path, {"invoice_order_seed": 7})
    assert info["reader_options"] == {"invoice_order": "shuffled", "invoice_order_seed": 2020}
    assert info_file["reader_options"]["invoice_order"] == "file"
    assert info["as_converted"] == info_file["as_converted"]  # counts never depend on the order
    assert again == shuffled and other_seed != shuffled
    assert shuffled != file_order
    for user, seq in file_order.items():
        # a permutation of the rows that share a timestamp, never across timestamps
        assert sorted(shuffled[user][:6]) == sorted(seq[:6]) and sorted(shuffled[user][6:]) == sorted(seq[6:])
    times = [float(t) for u, _, t in rows if u == "1"]
    assert times == sorted(times) and shuffled["1"][6:] in (["F", "E"], ["E", "F"])


@pytest.mark.parametrize("option, words", [
    (["invoice_order=random"], "invoice_order must be one of shuffled, file"),
    (["invoice_order_seed=abc"], "invoice_order_seed must be an integer"),
    (["order=file"], "has no option 'order' (options: invoice_order, invoice_order_seed)"),
    (["invoice_order"], "--option takes KEY=VALUE"),
])
def test_online_retail_bad_options_fail_in_one_line(tmp_path, option, words, capsys):
    src = _or_source(tmp_path)
    args = ["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out")]
    for o in option:
        args += ["--option", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not (tmp_path / "out" / "D").exists()


@pytest.mark.parametrize("bad_row, words", [
    ("7,A,X,1,2010-12-01 08:26,1.0\n", "expected 8 fields"),
    ("7,A,X,many,2010-12-01 08:26,1.0,17850,UK\n", "Quantity 'many' is not an integer"),
    ("7,A,X,1,yesterday,1.0,17850,UK\n", "InvoiceDate 'yesterday'"),
])
def test_online_retail_bad_rows(tmp_path, bad_row, words, capsys):
    src = tmp_path / "retail.csv"
    src.write_text(OR_HEAD + or_rows("1", ["A", "B"], "2010-12-01 08:26") + bad_row)
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{src}:4: " in err and words in err


# ---------------------------------------------------------------- the raw IJCAI-15 log, CORE's recipe
def test_ijcai15_log_follows_cores_recipe(tmp_path):
    """CORE's dataset/preprocess.py on a small log: sessions above id 120000 skipped, one-item sessions dropped,
    items seen fewer than 5 times removed, sessions sorted by the time of their last row and split 80/10/10,
    valid/test sessions limited to items of the training sessions."""
    rows = ["UserId\tSessionId\tItemId\tTime"]

    def session(sid, items, t):
        rows.extend(f"7\t{sid}\t{item}\t{t + k}" for k, item in enumerate(items))

    for n in range(8):                       # 8 sessions with A, B (and C): frequent items, dates 100..800
        session(n + 1, ["A", "B", "C"] if n % 2 else ["B", "A"], 100 * (n + 1))
    session(9, ["A", "B", "X"], 900)         # X occurs once: removed; session kept (A, B)
    session(10, ["C", "D", "E", "E", "E", "E", "E", "A"], 1000)  # test: D is rare; E (5 times) is in no train session
    session(11, ["A"], 50)                   # one item: dropped
    session(120001, ["A", "B"], 10)          # id above 120000: skipped
    src = tmp_path / "dataset15.csv"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    info = prepare("T", str(src), out=str(out), echo=None)
    assert info["format"] == "ijcai15-log"
    seqs = by_user(read_inter(out, "T"), read_map(out, "T"))
    order = list(seqs)
    assert order == [str(s) for s in range(1, 11)]  # by date; 11 and 120001 gone
    assert seqs["9"] == ["A", "B"] and seqs["10"] == ["C", "A"] and seqs["2"] == ["A", "B", "C"]
    # 10 sessions: 8 train, 1 valid, 1 test; item ids numbered from 1 in training order
    assert read_map(out, "T") == {"1": "B", "2": "A", "3": "C"}


# ---------------------------------------------------------------- one session a line
def test_sessions_train_then_test_with_positions(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.test.txt").write_text("9,8,9\n")
    (src / "x.train.txt").write_text("1,2\n3,4,5\n")
    (src / "num_items.txt").write_text("9\n")
    out = run_prepare(tmp_path, src)
    rows = read_inter(out, "D")
    assert rows == [("0", "1", "0"), ("0", "2", "1"), ("1", "3", "0"), ("1", "4", "1"), ("1", "5", "2"),
                    ("2", "9", "0"), ("2", "8", "1"), ("2", "9", "2")]


@pytest.mark.parametrize("body, line, words", [
    ("1,2\n\n3,4\n", 2, "empty sequence"),
    ("1,2\n3,x4\n", 2, "item id 'x4' is not an integer"),
    ("1,2\n3,99\n", 2, "outside 0..9"),
])
def test_sessions_bad_lines(tmp_path, body, line, words, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.train.txt").write_text(body)
    (src / "num_items.txt").write_text("9\n")
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out"), "--format", "sessions"]) == 2
    assert f"{src / 'x.train.txt'}:{line}: " in capsys.readouterr().err


# ---------------------------------------------------------------- raw Amazon reviews
def review(user, asin, t):
    return json.dumps({"overall": 5.0, "reviewerID": user, "asin": asin, "unixReviewTime": t}) + "\n"


def amazon_lines():
    users, items = [f"U{u}" for u in range(5)], [f"I{i}" for i in range(5)]
    lines = [review(u, i, 1000 + 10 * ((k * 7 + j * 3) % 5)) for k, u in enumerate(users) for j, i in enumerate(items)]
    lines.append(review("U0", "I0", 5))        # duplicate (U0, I0), earlier: the kept one
    lines.append(review("U9", "I0", 1))        # U9 has one review: five-core drops it
    lines.append(review("U1", "I9", 1))        # I9 once: five-core drops it
    return lines


@pytest.mark.parametrize("compress", [False, True])
def test_amazon_reviews_dedupe_five_core_time_order(tmp_path, compress):
    data = "".join(amazon_lines()).encode()
    src = tmp_path / ("Arts_Crafts.json.gz" if compress else "Arts_Crafts.json")
    src.write_bytes(gzip.compress(data) if compress else data)
    out = run_prepare(tmp_path, src)
    rows = read_inter(out, "D")
    imap = read_map(out, "D")
    assert len(rows) == 25 and {r[0] for r in rows} == {f"U{u}" for u in range(5)}
    assert set(imap.values()) == {f"I{i}" for i in range(5)}
    for user, seq in by_user(rows).items():
        times = [float(r[2]) for r in rows if r[0] == user]
        assert times == sorted(times) and len(set(seq)) == 5
    u0 = [(imap[i], t) for u, i, t in rows if u == "U0"]
    assert u0[0] == ("I0", "5")


def test_amazon_truncated_gzip(tmp_path, capsys):
    data = gzip.compress("".join(amazon_lines() * 200).encode())
    src = tmp_path / "reviews.json.gz"
    src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert main(["prepare", "D", "--source", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {src}:" in err and "truncated" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_amazon_bad_time_and_bad_json(tmp_path, capsys):
    src = tmp_path / "reviews.json"
    src.write_text(review("U0", "I0", 1) + review("U0", "I1", "soon"))
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    assert f"{src}:2: unixReviewTime 'soon' is not an integer" in capsys.readouterr().err
    src.write_text(review("U0", "I0", 1) + '{"reviewerID": "U1", "asin": \n')
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    assert f"{src}:2: malformed JSON" in capsys.readouterr().err


# ---------------------------------------------------------------- sources, atomicity, CLI
def test_unknown_format_and_missing_source_exit_2(tmp_path, capsys):
    src = tmp_path / "notes.txt"
    src.write_text("hello world\n")
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert main(["prepare", "D", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'nope'}: source not found" in capsys.readouterr().err
    assert main(["prepare", "D", "--source", str(src), "--out", str(tmp_path / "out"), "--format", "xml"]) == 2
    assert "unknown format 'xml'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_reconversion_replaces_files_and_leaves_no_temp(tmp_path):
    src = tmp_path / "x.train.txt"
    src.write_text("1,2,3\n")
    out = run_prepare(tmp_path, src)
    src.write_text("4,5,6\n")
    out = run_prepare(tmp_path, src)
    assert [r[1] for r in read_inter(out, "D")] == ["4", "5", "6"]
    assert sorted(p.name for p in out.iterdir()) == ["D"]
    assert sorted(p.name for p in (out / "D").iterdir()) == ["D.inter", "D.item_map", "D.prepared.json"]


def test_cli_subprocess_exit_code_and_stats(tmp_path):
    src = tmp_path / "x.train.txt"
    src.write_text("1,2,3\n2,3\n")
    cmd = [sys.executable, "-m", "recbole_famous.data"]
    ok = subprocess.run(cmd + ["prepare", "D", "--source", str(src), "--out", str(tmp_path / "o")],
                        cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and "D as converted" in ok.stdout
    row = next(line for line in ok.stdout.splitlines() if line.startswith("D as converted"))
    assert row.split()[3:] == ["2", "3", "5", "2.50", "16.67%", "3"]  # the paper counts 5 - 2 actions
    st = subprocess.run(cmd + ["stats", "D", "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True)
    assert st.returncode == 0 and "D after RecBole filter" in st.stdout
    bad = subprocess.run(cmd + ["prepare", "D", "--source", str(tmp_path / "missing")], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- ensure_prepared
def test_ensure_prepared_converts_once_from_env(tmp_path, monkeypatch):
    root = tmp_path / "sources" / "Tmall"
    root.mkdir(parents=True)
    (root / "t.train.txt").write_text("1,2,3\n")
    monkeypatch.setenv(SOURCE_ENV, str(tmp_path / "sources"))
    data = tmp_path / "dataset"
    ensure_prepared("Tmall", str(data), None, echo=None)
    inter = data / "Tmall" / "Tmall.inter"
    first = inter.stat().st_mtime_ns
    (root / "t.train.txt").write_text("garbage\n")   # would fail if converted again
    ensure_prepared("Tmall", str(data), None, echo=None)
    assert inter.stat().st_mtime_ns == first


def test_ensure_prepared_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    with pytest.raises(DatasetNotPrepared) as info:
        ensure_prepared("Arts", str(tmp_path / "dataset"), None)
    msg = str(info.value)
    assert "\n" not in msg and "python -m recbole_famous.data prepare Arts --source" in msg and SOURCE_ENV in msg
    bad = tmp_path / "bad" / "Arts"
    bad.mkdir(parents=True)
    (bad / "Arts.inter.json").write_text('{"0": []}')
    with pytest.raises(DatasetNotPrepared, match=r"Arts.inter.json:1: user '0': empty sequence"):
        ensure_prepared("Arts", str(tmp_path / "dataset"), str(tmp_path / "bad"))
    assert not (tmp_path / "dataset" / "Arts").exists()
    ensure_prepared("ml-100k", str(tmp_path / "dataset"), None)   # not ours: left to RecBole


def test_stats_prints_actions_in_both_conventions(tmp_path, capsys):
    """Table 1 as the paper counts actions (training rows: minus one per sequence) beside the true count; with no
    name, every known dataset, the unprepared ones named."""
    from recbole_famous.data.stats import Table1

    assert Table1(16520, 3469, 519906).paper_actions == 503386  # OR: the paper's figure
    out = tmp_path / "ds"
    prepare("OR", str(_or_source(tmp_path)), out=str(out), echo=None)
    assert main(["stats", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    line = next(l for l in text.splitlines() if l.startswith("OR as converted"))
    assert line.split()[3:6] == ["12", "6", "74"] and line.split()[-1] == "62"
    assert "Arts: " in text and "not prepared" in text and "#Actions as the paper counts" in text
    assert main(["stats", "Arts", "--out", str(out)]) == 2  # one named and missing: an error


def test_ijcai15_log_bad_row_names_file_and_line(tmp_path, capsys):
    src = tmp_path / "dataset15.csv"
    src.write_text("SessionId\tItemId\tTime\n1\tA\t10\n1\tB\tsoon\n")
    assert main(["prepare", "T", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{src}:3: " in err and "Time 'soon' is not a number" in err
