"""UCI Online Retail table (OR), CSV plain or gzip, with UniSRec's recipe.

Columns InvoiceNo, StockCode, Description, Quantity, InvoiceDate (others ignored), all read
as text. An invoice is a sequence, a StockCode an item. Rows with an empty Description are
dropped; an interaction is a distinct (InvoiceNo, StockCode, Quantity, InvoiceDate), so the
same item twice in one invoice with different quantities counts twice; then five-core on
invoices and items, repeated until stable (16,520 / 3,469 / 519,906 on the full table).
Timestamp: InvoiceDate as Unix seconds (UTC), `YYYY-MM-DD HH:MM[:SS]` or UCI's `M/D/YYYY H:MM`;
items of one invoice share it and keep the file's row order.
"""

import csv
from datetime import datetime, timezone

from recbole_famous.errors import SourceError
from ..filtering import k_core
from .base import Interactions, head_text, numbered_lines, parse_int

FORMAT = "online-retail"
COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate")
DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S")


def sniff(path):
    first = head_text(path, 4096).split("\n", 1)[0].lstrip("\ufeff").rstrip("\r")
    header = next(csv.reader([first]), [])
    return all(c in header for c in COLUMNS)


def detect(files, forced=False):
    """The first file in this format; forced: the first file, unsniffed."""
    cands = [f for f in files if forced or sniff(f)]
    return cands[:1] or None


_SECONDS = {}  # InvoiceDate text -> Unix seconds (the same few thousand dates repeat)


def _to_unix(text, path, line):
    ts = _SECONDS.get(text)
    if ts is None:
        for fmt in DATE_FORMATS:
            try:
                ts = datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
                break
            except ValueError:
                continue
        else:
            raise SourceError(path, f"InvoiceDate {text!r} is not a date like 2010-12-01 08:26", line)
        _SECONDS[text] = ts
    return ts


def _rows(path):
    """(line, InvoiceNo, StockCode, Description, Quantity, InvoiceDate) for each data row."""
    lines = numbered_lines(path)
    line_no = {"n": 0}

    def text_lines():
        for n, line in lines:
            line_no["n"] = n
            yield line

    reader = csv.reader(text_lines())
    try:
        header = [h.lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise SourceError(path, "empty file") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise SourceError(path, f"missing columns {missing}", 1)
    cols = [header.index(c) for c in COLUMNS]
    try:
        for row in reader:
            n = line_no["n"]
            if not row:
                continue
            if len(row) != len(header):
                raise SourceError(path, f"expected {len(header)} fields, got {len(row)}", n)
            yield (n,) + tuple(row[c] for c in cols)
    except csv.Error as e:
        raise SourceError(path, f"malformed CSV: {e}", line_no["n"]) from None


def read(files, k=5):
    path = files[0]
    seen, users, items, times = set(), [], [], []
    for n, invoice, code, desc, qty, date in _rows(path):
        if not invoice.strip() or not code.strip():
            raise SourceError(path, "empty InvoiceNo or StockCode", n)
        parse_int(qty, path, n, "Quantity")
        if desc == "":
            continue
        key = (invoice, code, qty, date)
        if key in seen:
            continue
        seen.add(key)
        users.append(invoice)
        items.append(code)
        times.append(_to_unix(date, path, n))
    if not users:
        raise SourceError(path, "no interactions")
    keep = k_core(users, items, k)
    out, token, order = Interactions(), {}, {}
    for u, i, t, ok in zip(users, items, times, keep):
        if ok:
            order.setdefault(u, []).append((token.setdefault(i, str(len(token))), t))
    for u, rows in order.items():
        rows.sort(key=lambda r: r[1])  # stable: equal dates keep the file's row order
        out.add_sequence(u, [i for i, _ in rows], [t for _, t in rows])
    out.item_map = [(tok, code) for code, tok in token.items()]
    if not out.users:
        raise SourceError(path, f"nothing left after the {k}-core filter")
    return out
