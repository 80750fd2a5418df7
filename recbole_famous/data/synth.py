"""Synthetic sequential data whose users follow known behaviour types of different frequency content.

Built to need routing (FamouSRec's router, paper Section 3.2.2): the next item of a user is predicted
by a different kind of evidence for each type, and a user's type shows in the spectrum of the history.

Items are ``n_topics`` topics of ``items_per_topic`` items each. Each user has one type:

* ``stable`` (low frequency: a long-term interest). Two personal topics; every item is drawn uniformly
  from their union. The best prediction is the union of the topics seen over the whole history (the
  last item names only one of them): an average over all positions, a low-pass read-out.
* ``periodic`` (high frequency: periodic returns). A personal cycle of ``period`` random items repeated
  ``a b c a b c ...``; the next item is the one ``period`` steps back. The last item alone says nothing
  (the cycle is the user's own); a delay or a recurrence reads it.
* ``drift`` (short bursts that drift). A walk along one global chain of all items (a fixed random
  permutation): the next item is the successor of the last one. The last item is all that matters;
  an average over the history blurs it.
* ``repeat`` (a personal rhythm on the chain; not in the default ``types``). The same walk along the
  global chain, but every item is repeated ``r`` times in a row, ``r`` the user's own, uniform in
  ``[repeat_min, repeat_max]`` (``a a a b b b c ...`` for r = 3; the walk starts at a random point of a
  run). The next item is the last one again until its run has length r, then its successor: the
  answer depends on a count (of the trailing run, and r from the earlier runs), which a recurrence
  keeps and a fixed linear filter cannot.

``repeat_chain``: ``shared`` (default) walks the drift users' chain; ``own`` a second global chain of
the same items, so that repeat and drift users need different successor maps (one expert serving both
must hold both).

``periodicP`` or ``periodicP-Q`` (e.g. ``periodic2-3``, ``periodic5-7``) is the periodic type with its own
period range ``[P, Q]`` instead of ``period`` / ``period_max``, under that name: several periodic types of
different frequency in one dataset (fast and slow returns).

``period_max`` (default: ``period``) makes the period of each periodic user its own, uniform in
``[period, period_max]``: the next item is then the successor of the last item's previous occurrence
in the history (a content-based lookup, as attention does), not the item a fixed number of steps back.

With probability ``noise`` an item is replaced by a uniformly random one (the pattern goes on after it).
Lengths are uniform in ``[min_len, max_len]``. Written as RecBole atomic files: ``NAME.inter``
(``user_id``, ``item_id``, ``timestamp``; the time order is the list order) and ``NAME.types``
(``user_id`` and ``type``), in ``<out>/NAME/``. Deterministic for a seed.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from recbole_famous.files import write_text

TYPES = ("stable", "periodic", "drift")  # the default mix (Synth, Synth3)
KNOWN_TYPES = TYPES + ("repeat",)  # and periodicP-Q, matched by periodic_range
_PERIODIC_RANGE = re.compile(r"periodic(\d+)(?:-(\d+))?")


def periodic_range(kind: str):
    """``(P, Q)`` for a type named ``periodicP-Q`` (``(P, P)`` for ``periodicP``), else None."""
    m = _PERIODIC_RANGE.fullmatch(kind)
    return (int(m.group(1)), int(m.group(2) or m.group(1))) if m else None


def _sequence(kind: str, rng: random.Random, length: int, n_items: int, topics: list, chain: list,
              period: int, noise: float, period_max: int = None, repeat_min: int = 2, repeat_max: int = 4,
              repeat_walk: list = None) -> list:
    if kind == "stable":
        a, b = rng.sample(range(len(topics)), 2)
        pool = topics[a] + topics[b]
        seq = [rng.choice(pool) for _ in range(length)]
    elif kind == "periodic" or periodic_range(kind):
        period, period_max = periodic_range(kind) or (period, period_max)
        if period_max is not None and period_max != period:
            period = rng.randint(period, period_max)
        cycle = rng.sample(range(n_items), period)
        start = rng.randrange(period)
        seq = [cycle[(start + t) % period] for t in range(length)]
    elif kind == "drift":
        pos = rng.randrange(n_items)
        seq = [chain[(pos + t) % n_items] for t in range(length)]
    elif kind == "repeat":
        r = rng.randint(repeat_min, repeat_max)
        pos, offset = rng.randrange(n_items), rng.randrange(r)
        walk = repeat_walk or chain
        seq = [walk[(pos + (offset + t) // r) % n_items] for t in range(length)]
    else:
        raise ValueError(f"unknown behaviour type {kind!r}; known: {', '.join(KNOWN_TYPES)}")
    return [rng.randrange(n_items) if rng.random() < noise else item for item in seq]


def generate(name: str, out: str = "dataset", *, users_per_type: int = 300, n_topics: int = 10,
             items_per_topic: int = 10, min_len: int = 8, max_len: int = 20, period: int = 2,
             noise: float = 0.1, types=TYPES, seed: int = 0, period_max: int = None, repeat_min: int = 2,
             repeat_max: int = 4, repeat_chain: str = "shared", echo=print) -> Path:
    """Write ``<out>/<name>/<name>.inter`` and ``.types``; returns the folder. See the module docstring."""
    types = list(types)
    ranges = {t: periodic_range(t) for t in types if periodic_range(t)}
    unknown = [t for t in types if t not in KNOWN_TYPES and t not in ranges]
    if unknown or not types:
        raise ValueError(f"unknown behaviour type(s) {unknown or types}; known: {', '.join(KNOWN_TYPES)}, "
                         "periodicP-Q")
    if not (5 <= min_len <= max_len):
        raise ValueError(f"need 5 <= min_len <= max_len (RecBole's five-core filter), got {min_len}, {max_len}")
    if n_topics < 2 or items_per_topic < 1 or users_per_type < 1 or not 1 <= period:
        raise ValueError("need n_topics >= 2, items_per_topic >= 1, users_per_type >= 1, period >= 1")
    if period_max is not None and period_max < period:
        raise ValueError(f"need period_max >= period, got {period_max} < {period}")
    if not 1 <= repeat_min <= repeat_max:
        raise ValueError(f"need 1 <= repeat_min <= repeat_max, got {repeat_min}, {repeat_max}")
    if repeat_chain not in ("shared", "own"):
        raise ValueError(f"repeat_chain must be 'shared' or 'own', got {repeat_chain!r}")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    rng = random.Random(seed)
    n_items = n_topics * items_per_topic
    for p, q in ranges.values():
        if not 1 <= p <= q:
            raise ValueError(f"a periodicP-Q type needs 1 <= P <= Q, got periodic{p}-{q}")
    longest = max([period, period_max or 0] + [q for _, q in ranges.values()])
    if longest > n_items:
        raise ValueError(f"period {longest} exceeds the {n_items} items")
    topics = [list(range(t * items_per_topic, (t + 1) * items_per_topic)) for t in range(n_topics)]
    chain = list(range(n_items))
    rng.shuffle(chain)
    repeat_walk = None
    if repeat_chain == "own":  # drawn only then: the default data stay the same
        repeat_walk = list(range(n_items))
        rng.shuffle(repeat_walk)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    rows, kinds = [], []
    uid = 0
    for kind in types:
        for _ in range(users_per_type):
            uid += 1
            user = f"u{uid:06d}"
            length = rng.randint(min_len, max_len)
            for t, item in enumerate(_sequence(kind, rng, length, n_items, topics, chain, period, noise,
                                                           period_max, repeat_min, repeat_max, repeat_walk)):
                rows.append(f"{user}\ti{item:05d}\t{t}\n")
            kinds.append(f"{user}\t{kind}\n")
    inter, type_file = folder / f"{name}.inter", folder / f"{name}.types"
    for path, header, body in ((inter, "user_id:token\titem_id:token\ttimestamp:float\n", rows),
                               (type_file, "user_id\ttype\n", kinds)):
        write_text(str(path), header + "".join(body))
    echo(f"wrote {inter} ({uid} users, {n_items} items, {len(rows)} interactions; types {', '.join(types)}) "
         f"and {type_file}")
    return folder


def read_types(name: str, out: str = "dataset") -> dict:
    """``{user_id token: type}`` from ``<out>/<name>/<name>.types``."""
    path = Path(out) / name / f"{name}.types"
    if not path.is_file():
        raise FileNotFoundError(f"no behaviour types for {name!r}: {path} is missing "
                                f"(write it with `python -m recbole_famous.data synth {name}`)")
    with open(path, encoding="utf-8") as f:
        next(f)
        return dict(line.rstrip("\n").split("\t") for line in f if line.strip())
