"""The raw IJCAI-15 Tmall log, with CORE's recipe (the paper's Tmall counts fit it).

Format: what CORE's ``dataset/preprocess.py`` (RUCAIBox/CORE) reads as ``raw/dataset15.csv``: tab-separated with a
header holding ``SessionId``, ``ItemId`` and ``Time`` (other columns ignored), the rows of one session next to each
other. Recipe, as CORE applies it:

1. rows of sessions with id above 120,000 are skipped; a session's items are its rows in file order, its date the
   ``Time`` of its last row;
2. sessions of one item are dropped; items occurring fewer than 5 times in the remaining sessions are removed from
   them, and sessions left with fewer than 2 items are dropped;
3. sessions sorted by date (stable) and split 80% / 10% / 10% (train / valid / test); valid and test sessions lose
   the items that no training session holds, and are dropped when fewer than 2 remain.

Every kept session becomes a sequence (train sessions first, then valid, then test, each by date), its items
timestamped by position. RecBole's protocol then applies its own leave-one-out to each sequence (``props/dataset/
Tmall.yaml``). The shared Tmall files are not this log: they are GCE-GNN's preprocessing (``sessions`` reader).
"""

from recbole_famous.errors import SourceError
from .base import Interactions, csv_rows, head_text

FORMAT = "ijcai15-log"
COLUMNS = ("SessionId", "ItemId", "Time")
MAX_SESSION_ID = 120000
MIN_ITEM_COUNT = 5


def sniff(path):
    first = head_text(path, 4096).split("\n", 1)[0].lstrip("\ufeff").rstrip("\r")
    return all(c in first.split("\t") for c in COLUMNS)


def detect(files, forced=False):
    cands = [f for f in files if forced or sniff(f)]
    return cands[:1] or None


def _sessions(path):
    """``{session id: [items]}`` and ``{session id: date}`` in file order (step 1)."""
    clicks, dates = {}, {}
    rows = csv_rows(path, delimiter="\t")
    _, header = next(rows, (1, []))
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise SourceError(path, f"missing columns {missing}", 1)
    at = {c: header.index(c) for c in COLUMNS}
    for n, fields in rows:
        if not fields:
            continue
        if len(fields) != len(header):
            raise SourceError(path, f"expected {len(header)} tab-separated fields, got {len(fields)}", n)
        sid, item, when = (fields[at[c]] for c in COLUMNS)
        try:
            if int(sid) > MAX_SESSION_ID:
                continue
            date = float(when)
        except ValueError:
            raise SourceError(path, f"SessionId {sid!r} or Time {when!r} is not a number", n) from None
        if not item:
            raise SourceError(path, "empty ItemId", n)
        clicks.setdefault(sid, []).append(item)
        dates[sid] = date
    return clicks, dates


def read(files):
    path = files[0]
    clicks, dates = _sessions(path)
    clicks = {s: seq for s, seq in clicks.items() if len(seq) > 1}  # step 2
    counts = {}
    for seq in clicks.values():
        for item in seq:
            counts[item] = counts.get(item, 0) + 1
    clicks = {s: [i for i in seq if counts[i] >= MIN_ITEM_COUNT] for s, seq in clicks.items()}
    clicks = {s: seq for s, seq in clicks.items() if len(seq) >= 2}
    order = sorted(clicks, key=lambda s: dates[s])  # step 3 (stable: ties keep file order)
    train_end, valid_end = int(len(order) * 0.8), int(len(order) * 0.9)
    out, token = Interactions(), {}
    for s in order[:train_end]:
        out.add_sequence(s, [token.setdefault(i, str(len(token) + 1)) for i in clicks[s]])
    for s in order[train_end:]:
        seq = [token[i] for i in clicks[s] if i in token]
        if len(seq) >= 2:
            out.add_sequence(s, seq)
    if not out.users:
        raise SourceError(path, "no session left after CORE's filters")
    out.item_map = [(tok, item) for item, tok in token.items()]
    return out
