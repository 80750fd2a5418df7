"""The paper's five datasets converted from the real published files in ../shared/datasets
and loaded through RecBole under this project's props: the counts the datasets README gives.
Also: RecBole's time ordering reproduces the file's order where timestamps tie (OR invoices)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import recbole_famous  # noqa: F401  (RecBole compat fixes first)
from recbole_famous.data.prepare import prepare
from recbole_famous.data.stats import Table1, describe, from_recbole

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# (sequences, items, actions): as converted, and after RecBole's filtering under props/
EXPECTED = {
    "Arts": (Table1(22171, 9416, 174079), Table1(22171, 9416, 174079)),
    "Instruments": (Table1(24772, 9922, 206153), Table1(24772, 9922, 206153)),
    "Office": (Table1(87346, 25986, 680304), Table1(87346, 25986, 680304)),
    "OR": (Table1(16520, 3469, 519906), Table1(16520, 3469, 519906)),
    # train + test sessions, all kept; RecBole keeps sessions of >= 3 items, items unfiltered
    "Tmall": (Table1(66313, 40727, 443479), Table1(49643, 40665, 410139)),
}

real = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real datasets not found at {SHARED}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """All five converted once into a temporary data_path: {name: prepare()'s info}."""
    out = tmp_path_factory.mktemp("dataset")
    infos = {}
    for name in EXPECTED:
        start = time.perf_counter()
        infos[name] = prepare(name, str(SHARED), out=str(out), echo=None)
        infos[name]["wall"] = time.perf_counter() - start
    return out, infos


def load(name, data_path):
    from recbole_famous import compat
    from recbole_famous.config import Config

    config = Config("SASRec", name, None, {"data_path": str(data_path), "use_gpu": False, "show_progress": False})
    return compat.sequential_dataset_class()(config)


@real
@pytest.mark.parametrize("name", list(EXPECTED))
def test_conversion_counts(converted, name):
    out, infos = converted
    as_converted, after = EXPECTED[name]
    assert Table1(**{k: infos[name]["as_converted"][k] for k in ("sequences", "items", "actions")}) == as_converted
    assert Table1(**{k: infos[name]["after_recbole_filter"][k] for k in ("sequences", "items", "actions")}) == after
    assert (out / name / f"{name}.inter").is_file()


@real
@pytest.mark.parametrize("name", list(EXPECTED))
def test_recbole_loads_expected_counts(converted, name):
    out, _ = converted
    dataset = load(name, out)
    assert from_recbole(dataset) == EXPECTED[name][1]
    text = describe(dataset).splitlines()
    assert text[1].startswith(f"{name} as converted") and text[2].startswith(f"{name} after RecBole filter")
    assert text[2].split()[4:7] == [f"{n:,}" for n in (EXPECTED[name][1].sequences, EXPECTED[name][1].items,
                                                       EXPECTED[name][1].actions)]


@real
def test_item_maps_lead_back_to_original_ids(converted):
    out, _ = converted

    def item_map(name):
        lines = (out / name / f"{name}.item_map").read_text().splitlines()[1:]
        return dict(line.split("\t") for line in lines)

    arts = item_map("Arts")
    first = (SHARED / "Arts" / "Arts.item2id").read_text().splitlines()[0].split("\t")
    assert arts[first[1]] == first[0] and len(arts) == 9416
    office = item_map("Office")
    assert office["0"] == "B00HESI8BO" and len(office) == 25986
    retail = item_map("OR")
    first_row = (out / "OR" / "OR.inter").read_text().split("\n", 2)[1].split("\t")
    assert first_row[0] == "536365" and retail[first_row[1]] == "85123A" and len(retail) == 3469


def _prepare_ties(tmp_path, options):
    codes = ["Q", "B", "X", "A", "M", "C"]
    orders = {str(n): codes[n % 6:] + codes[: n % 6] for n in range(1, 9)}
    text = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    for inv, seq in orders.items():
        text += "".join(f"{inv},{c},THING,1,2011-01-0{int(inv)} 09:00,1.0,1,UK\n" for c in seq)
    (tmp_path / "src.csv").write_text(text)
    prepare("OR", str(tmp_path / "src.csv"), out=str(tmp_path / "ds"), echo=None, options=options)
    imap = dict(line.split("\t") for line in (tmp_path / "ds/OR/OR.item_map").read_text().splitlines()[1:])
    converted = {}
    for line in (tmp_path / "ds/OR/OR.inter").read_text().splitlines()[1:]:
        u, i, _ = line.split("\t")
        converted.setdefault(u, []).append(imap[i])
    return orders, converted, imap


def _recbole_targets(tmp_path, imap, back):
    dataset = load("OR", tmp_path / "ds")
    _, valid, test = dataset.build()
    split = {1: test, 2: valid}[back]
    users = dataset.id2token("user_id", split.inter_feat["user_id"])
    items = dataset.id2token("item_id", split.inter_feat["item_id"])
    return {u: imap[i] for u, i in zip(users, items)}


def test_recbole_order_keeps_file_order_within_equal_timestamps(tmp_path):
    """OR invoices share one timestamp; with invoice_order: file, RecBole's leave-one-out takes the file's last
    items."""
    orders, converted, imap = _prepare_ties(tmp_path, {"invoice_order": "file"})
    assert converted == orders
    for back in (1, 2):
        assert _recbole_targets(tmp_path, imap, back) == {u: s[-back] for u, s in orders.items()}


def test_recbole_order_follows_the_shuffled_invoice_order(tmp_path):
    """The default order shuffles the rows that share an invoice and a timestamp; RecBole's stable sort keeps the
    converted order, so leave-one-out takes the converted file's last items (not the CSV's)."""
    orders, converted, imap = _prepare_ties(tmp_path, None)
    assert {u: sorted(s) for u, s in converted.items()} == {u: sorted(s) for u, s in orders.items()}
    assert converted != orders  # 8 invoices of 6 rows: all 8 left in file order has chance (1/720)^8
    for back in (1, 2):
        assert _recbole_targets(tmp_path, imap, back) == {u: s[-back] for u, s in converted.items()}
