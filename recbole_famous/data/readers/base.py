"""What every reader returns, and the helpers they share: opening plain or gzip text,
numbering lines, and turning decode/gzip failures into a SourceError that names the line."""

import gzip
import zlib
from dataclasses import dataclass, field

from recbole_famous.errors import SourceError

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Interactions:
    """Rows of the atomic file in output order (grouped by user, time order inside a user),
    and the map from item token to the item's id in the source (ASIN, StockCode, ...)."""

    users: list = field(default_factory=list)
    items: list = field(default_factory=list)
    times: list = field(default_factory=list)
    item_map: list = field(default_factory=list)  # [(token, original id)]

    def add_sequence(self, user, items, times=None):
        """Append one user's items; without times use positions 0, 1, 2, ..."""
        self.users.extend([user] * len(items))
        self.items.extend(items)
        self.times.extend(range(len(items)) if times is None else times)


def is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_text(path):
    """Open a file as UTF-8 text, decompressing gzip when the magic bytes say so."""
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def head_text(path, size=65536):
    """The first `size` characters (after decompression), or '' when unreadable: for sniffing only."""
    try:
        with open_text(path) as f:
            return f.read(size)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error):
        return ""


def read_all(path):
    """The whole file as text; a truncated gzip or a bad encoding becomes a SourceError."""
    try:
        with open_text(path) as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise SourceError(path, f"cannot read (truncated or corrupt gzip?): {e}") from None
    except UnicodeDecodeError as e:
        raise SourceError(path, f"not UTF-8 text: {e}") from None


def numbered_lines(path):
    """Yield (line number from 1, line without newline); read errors name the line reached."""
    n = 0
    try:
        with open_text(path) as f:
            for n, line in enumerate(f, 1):
                yield n, line.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as e:
        raise SourceError(path, f"cannot read past this line (truncated or corrupt gzip?): {e}", n + 1) from None
    except UnicodeDecodeError as e:
        raise SourceError(path, f"not UTF-8 text: {e}", n + 1) from None


def csv_rows(path, delimiter=","):
    """Yield (line number, fields) of a CSV file, the header row first; malformed CSV becomes a SourceError that
    names the line reached."""
    import csv

    lines = numbered_lines(path)
    at = {"n": 0}

    def text_lines():
        for n, line in lines:
            at["n"] = n
            yield line

    try:
        for row in csv.reader(text_lines(), delimiter=delimiter):
            yield at["n"], row
    except csv.Error as e:
        raise SourceError(path, f"malformed CSV: {e}", at["n"]) from None


def parse_int(text, path, line, what):
    """An integer id, or a SourceError saying which file, line and field was not one."""
    try:
        return int(text)
    except (TypeError, ValueError):
        raise SourceError(path, f"{what} {text!r} is not an integer", line) from None

