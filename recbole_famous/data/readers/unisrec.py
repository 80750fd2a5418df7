"""UniSRec-style split files (Office): RecBole atomic files with the header
`user_id:token  item_id_list:token_seq  item_id:token`.

Each row of `<p>.test.inter` holds the last 50 items of a user's train+valid history and the
test item, so history + target is the user's whole sequence (users with more than 51 items
lose their oldest ones). The train split is rebuilt from the test rows alone. When
`<p>.valid.inter` is present each of its rows must agree with the rebuilt sequence (it is the
same sequence one step earlier), else the files do not belong together. `<p>.item2index`
(`ASIN<TAB>index`) maps item tokens back to ASINs. Items carry their position as timestamp.
UniSRec applied five-core to the full histories, so no second filter belongs on the result.
"""

from pathlib import Path

from recbole_famous.errors import SourceError
from .base import Interactions, head_text, numbered_lines
from .user_json import read_item2id

FORMAT = "unisrec"
HEADER = ("user_id:token", "item_id_list:token_seq", "item_id:token")


def sniff(path):
    first = head_text(path, 4096).split("\n", 1)[0].rstrip("\r")
    return tuple(first.split("\t")) == HEADER


def detect(files, forced=False):
    """The test split (or the only split file given) plus valid / item2index siblings."""
    cands = sorted((f for f in files if f.name.endswith(".inter") and (forced or sniff(f))),
                   key=lambda f: not f.name.endswith(".test.inter"))
    if not cands:
        return None
    main = cands[0]
    prefix = main.name.split(".")[0]
    out = [main]
    for suffix in (".valid.inter", ".item2index"):
        aux = main.with_name(prefix + suffix)
        if aux.is_file() and aux != main:
            out.append(aux)
    return out


def read_split(path):
    """{user: (line, history + [target])} from one split file."""
    rows = {}
    for n, line in numbered_lines(path):
        if n == 1:
            if tuple(line.split("\t")) != HEADER:
                raise SourceError(path, f"expected header {' '.join(HEADER)!r}", n)
            continue
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise SourceError(path, f"expected 3 tab-separated fields, got {len(parts)}", n)
        user, hist, target = parts[0].strip(), parts[1].split(), parts[2].strip()
        if not user or not target:
            raise SourceError(path, "empty user or target item", n)
        if user in rows:
            raise SourceError(path, f"user {user!r} appears twice", n)
        rows[user] = (n, hist + [target])
    return rows


def _check_valid(valid_path, valid, test):
    for user, (n, vseq) in valid.items():
        tseq = test.get(user, (None, None))[1]
        if tseq is None:
            raise SourceError(valid_path, f"user {user!r} has no row in the test split", n)
        # valid is the same sequence one step earlier; its window may start one item earlier
        if vseq[-(len(tseq) - 1):] != tseq[:-1] and vseq != tseq[:-1]:
            raise SourceError(valid_path, f"user {user!r}: row disagrees with the test split", n)


def read(files):
    files = [Path(f) for f in files]
    main = files[0]
    test = read_split(main)
    if not test:
        raise SourceError(main, "no rows")
    valid_path = next((f for f in files[1:] if f.name.endswith(".valid.inter")), None)
    if valid_path is not None:
        _check_valid(valid_path, read_split(valid_path), test)
    map_path = next((f for f in files[1:] if f.name.endswith(".item2index")), None)
    asin = None
    if map_path is not None:
        asin = {str(i): a for i, a in read_item2id(map_path).items()}
    out, seen = Interactions(), set()
    for user, (n, seq) in test.items():
        if asin is not None:
            missing = next((i for i in seq if i not in asin), None)
            if missing is not None:
                raise SourceError(main, f"item {missing!r} is not in {map_path.name}", n)
        seen.update(seq)
        out.add_sequence(user, seq)
    key = (lambda t: (0, int(t), t)) if all(t.isdigit() for t in seen) else (lambda t: (1, 0, t))
    out.item_map = [(t, asin[t] if asin else t) for t in sorted(seen, key=key)]
    return out
