"""Writing files whole: a reader sees the old file or the new one, never half of one (a temporary file in the same
folder, named by the process, then ``os.replace``). At the bottom of the package, with ``errors``: every layer uses
it."""

from __future__ import annotations

import json
import os


def write_text(path: str, text: str, fsync: bool = False) -> None:
    """Write ``text`` to ``path`` atomically; ``fsync`` also forces it to disk before the rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, data, fsync: bool = False) -> None:
    """``data`` as indented JSON (non-JSON values as their text), written atomically."""
    write_text(path, json.dumps(data, indent=2, default=str), fsync)
