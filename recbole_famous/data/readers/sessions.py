"""One session per line (Tmall as preprocessed for session-based recommendation).

Each line: comma-separated integer item ids in time order. A folder may hold several such
files (`*.train.txt`, `*.test.txt`): train files come first, then the others, and sessions
are numbered 0, 1, 2, ... across them in that order. `num_items.txt`, when present, gives the
largest valid item id. No timestamps: each item gets its position in the session. No filter
is applied here; the dataset's yaml decides which sessions RecBole keeps.
"""

import re

from recbole_famous.errors import SourceError
from .base import Interactions, head_text, numbered_lines, parse_int

FORMAT = "sessions"
_LINE = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*$")
NUM_ITEMS = "num_items.txt"


def sniff(path):
    text = head_text(path, 65536)
    lines = text.split("\n")[:-1] if len(text) >= 65536 else text.split("\n")
    lines = [l for l in lines if l.strip()]
    return bool(lines) and path.name != NUM_ITEMS and all(_LINE.match(l) for l in lines[:100]) \
        and any("," in l for l in lines[:100])


def detect(files, forced=False):
    """Session files (train first) and num_items.txt; forced: every .txt/.gz/.csv file, unsniffed."""
    cands = [f for f in files if f.suffix in (".txt", ".gz", ".csv") and f.name != NUM_ITEMS and (forced or sniff(f))]
    if not cands:
        return None
    cands.sort(key=lambda f: ("train" not in f.name, f.name))
    num = cands[0].with_name(NUM_ITEMS)
    return cands + ([num] if num.is_file() and num in files else [])


def _num_items(path):
    for n, line in numbered_lines(path):
        if line.strip():
            return parse_int(line.strip(), path, n, "number of items")
    raise SourceError(path, "empty file")


def read(files):
    limit = _num_items(files[-1]) if files[-1].name == NUM_ITEMS else None
    out, seen, sid = Interactions(), set(), 0
    for path in (f for f in files if f.name != NUM_ITEMS):
        for n, line in numbered_lines(path):
            if not line.strip():
                raise SourceError(path, "empty sequence (blank line)", n)
            seq = [parse_int(t.strip(), path, n, "item id") for t in line.split(",")]
            bad = next((i for i in seq if i < 0 or (limit is not None and i > limit)), None)
            if bad is not None:
                raise SourceError(path, f"item id {bad} outside 0..{limit if limit is not None else 'inf'}", n)
            seen.update(seq)
            out.add_sequence(str(sid), [str(i) for i in seq])
            sid += 1
    if not out.users:
        raise SourceError(files[0], "no sessions")
    out.item_map = [(str(i), str(i)) for i in sorted(seen)]
    return out
