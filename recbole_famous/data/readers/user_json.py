"""User-to-item-list JSON (Arts, Instruments as released with MQL4GRec / LC-Rec).

One JSON object `{"user": [item, item, ...], ...}`, each list in time order, items 0-based
integers. An optional sibling `<prefix>.item2id` (`ASIN<TAB>index` per line) maps the indices
back to ASINs; without it the item map is the identity. No timestamps: each item gets its
position in the list, so RecBole's time ordering reproduces the file's order.
"""

import json
from pathlib import Path

from recbole_famous.errors import SourceError
from .base import Interactions, head_text, numbered_lines, parse_int, read_all
from . import amazon_reviews

FORMAT = "user-json"


def sniff(path):
    """A JSON document that opens with '{' and is not JSON lines of Amazon reviews."""
    head = head_text(path, 4096).lstrip()
    return head.startswith("{") and not amazon_reviews.sniff(path)


def detect(files, forced=False):
    """The JSON file (preferring `*.inter.json`) plus its `.item2id` sibling; forced: unsniffed."""
    cands = [f for f in files if f.suffix in (".json", ".gz") or f.name.endswith(".inter.json")]
    cands = sorted((f for f in cands if forced or sniff(f)), key=lambda f: not f.name.endswith(".inter.json"))
    if not cands:
        return None
    main = cands[0]
    prefix = main.name.split(".")[0]
    aux = main.with_name(prefix + ".item2id")
    return [main, aux] if aux.is_file() else [main]


def _line_of(text, key):
    """Line number (from 1) where `"key"` first appears in text, for error messages."""
    pos = text.find(json.dumps(key))
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None


def read_item2id(path):
    """{index: ASIN} from `ASIN<TAB>index` lines."""
    out = {}
    for n, line in numbered_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise SourceError(path, f"expected 'ASIN<TAB>index', got {line[:60]!r}", n)
        idx = parse_int(parts[1], path, n, "index")
        if idx in out:
            raise SourceError(path, f"index {idx} appears twice", n)
        out[idx] = parts[0]
    return out


def read(files):
    main = Path(files[0])
    text = read_all(main)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceError(main, f"malformed JSON: {e.msg}", e.lineno) from None
    if not isinstance(data, dict):
        raise SourceError(main, "expected a JSON object mapping users to item lists", 1)
    asin = read_item2id(files[1]) if len(files) > 1 else None
    out, seen = Interactions(), set()
    for user, seq in data.items():
        if not isinstance(seq, list):
            raise SourceError(main, f"user {user!r}: expected a list of items", _line_of(text, user))
        if not seq:
            raise SourceError(main, f"user {user!r}: empty sequence", _line_of(text, user))
        for item in seq:
            if not isinstance(item, int) or isinstance(item, bool) or item < 0:
                raise SourceError(main, f"user {user!r}: item {item!r} is not a non-negative integer",
                                  _line_of(text, user))
            if asin is not None and item not in asin:
                raise SourceError(main, f"user {user!r}: item {item} is not in {Path(files[1]).name}",
                                  _line_of(text, user))
        seen.update(seq)
        out.add_sequence(str(user), [str(i) for i in seq])
    out.item_map = [(str(i), asin[i] if asin else str(i)) for i in sorted(seen)]
    return out
