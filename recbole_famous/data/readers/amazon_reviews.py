"""Raw Amazon review dumps (2018 or 2014): JSON lines, plain or gzip, one review a line with
`reviewerID`, `asin`, `unixReviewTime` (other fields ignored).

The recipe that made the paper's Arts / Instruments / Office: keep one interaction per
(reviewer, item), the earliest; five-core on users and items, repeated until stable; each
user's items sorted by time (equal times keep the file's order). Timestamp: unixReviewTime.
Items are numbered 0, 1, ... in order of first appearance in the output; the map gives ASINs.
"""

import json

from recbole_famous.errors import SourceError
from ..filtering import k_core
from .base import Interactions, head_text, numbered_lines, parse_int

FORMAT = "amazon-reviews"
FIELDS = ("reviewerID", "asin", "unixReviewTime")


def sniff(path):
    for line in head_text(path, 65536).split("\n")[:5]:
        if line.strip():
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            return isinstance(obj, dict) and "reviewerID" in obj and "asin" in obj
    return False


def detect(files, forced=False):
    """The first file in this format; forced: the first file, unsniffed."""
    cands = [f for f in files if forced or sniff(f)]
    return cands[:1] or None


def read(files, k=5):
    path = files[0]
    first = {}  # (user, item) -> (time, line), earliest kept
    for n, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise SourceError(path, f"malformed JSON: {e}", n) from None
        if not isinstance(obj, dict) or any(f not in obj for f in FIELDS):
            raise SourceError(path, f"expected a JSON object with {', '.join(FIELDS)}", n)
        user, item = str(obj["reviewerID"]).strip(), str(obj["asin"]).strip()
        if not user or not item:
            raise SourceError(path, "empty reviewerID or asin", n)
        t = obj["unixReviewTime"]
        if not isinstance(t, int) or isinstance(t, bool):
            t = parse_int(t, path, n, "unixReviewTime")
        key = (user, item)
        if key not in first or t < first[key][0]:
            first[key] = (t, n)
    if not first:
        raise SourceError(path, "no reviews")
    rows = sorted(((u, i, t, n) for (u, i), (t, n) in first.items()), key=lambda r: r[3])
    keep = k_core([r[0] for r in rows], [r[1] for r in rows], k)
    by_user = {}
    for r, ok in zip(rows, keep):
        if ok:
            by_user.setdefault(r[0], []).append(r)
    out, token = Interactions(), {}
    for user, rs in by_user.items():
        rs.sort(key=lambda r: (r[2], r[3]))
        out.add_sequence(user, [token.setdefault(r[1], str(len(token))) for r in rs], [r[2] for r in rs])
    if not out.users:
        raise SourceError(path, f"nothing left after the {k}-core filter")
    out.item_map = [(tok, asin) for asin, tok in token.items()]
    return out
