"""Interaction-count filters as RecBole applies them (`user_inter_num_interval`,
`item_inter_num_interval`): drop users and items whose counts fall outside their interval,
both at once, and repeat until nothing changes (k-core for a lower bound k)."""

import re
from collections import Counter

_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*$")


def parse_intervals(text):
    """RecBole's interval string ("[5,inf)", "(0,1];[3,4)") as a predicate on counts; None if unset."""
    if text is None:
        return None
    parts = []
    for piece in str(text).split(";"):
        m = _INTERVAL.match(piece)
        if not m:
            raise ValueError(f"bad interval {piece!r} (expected e.g. '[5,inf)')")
        lb, lo, hi, rb = m.groups()
        parts.append((lb, float(lo), float(hi), rb))

    def ok(count):
        for lb, lo, hi, rb in parts:
            if (count > lo or (lb == "[" and count == lo)) and (count < hi or (rb == "]" and count == hi)):
                return True
        return False

    return ok


def filter_by_counts(users, items, user_ok=None, item_ok=None):
    """Keep-mask over parallel lists users/items after the repeated simultaneous filter."""
    keep = [True] * len(users)
    if user_ok is None and item_ok is None:
        return keep
    ucount, icount = Counter(users), Counter(items)
    while True:
        bad_u = {u for u, c in ucount.items() if c and user_ok and not user_ok(c)}
        bad_i = {i for i, c in icount.items() if c and item_ok and not item_ok(c)}
        if not bad_u and not bad_i:
            return keep
        for k, (u, i) in enumerate(zip(users, items)):
            if keep[k] and (u in bad_u or i in bad_i):
                keep[k] = False
                ucount[u] -= 1
                icount[i] -= 1


def k_core(users, items, k):
    """Keep-mask of the k-core on users and items (both at least k interactions)."""
    ok = parse_intervals(f"[{k},inf)") if k and k > 0 else None
    return filter_by_counts(users, items, ok, ok)


