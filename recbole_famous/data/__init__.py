"""Datasets of the paper as RecBole atomic files: `python -m recbole_famous.data prepare ...`.

Kept light: nothing heavy (torch, recbole, pandas) is imported here, so the CLI starts fast.
"""

import fcntl
import os
import shlex
from pathlib import Path

from recbole_famous.errors import DatasetNotPrepared, SourceError

KNOWN = ("Arts", "Instruments", "Office", "OR", "Tmall")
SOURCE_ENV = "RECBOLE_FAMOUS_SOURCE"

__all__ = ["KNOWN", "SOURCE_ENV", "DatasetNotPrepared", "SourceError", "ensure_prepared", "inter_path"]


def inter_path(name, data_path):
    return Path(data_path) / name / f"{name}.inter"


def _fix(name, data_path):
    return (f"python -m recbole_famous.data prepare {shlex.quote(name)} --source /path/to/datasets "
            f"--out {shlex.quote(str(data_path))}  (or set {SOURCE_ENV}=/path/to/datasets)")


def ensure_prepared(name: str, data_path: str, source: str | None = None, echo=print) -> None:
    """Make sure `data_path/name/name.inter` exists, converting it once from `source` (or
    $RECBOLE_FAMOUS_SOURCE: a folder with `<name>/` subfolders, a dataset folder, or a file).

    An existing file is never converted again; concurrent callers wait on a lock. A name that
    is not one of KNOWN, missing, and with no source holding it, is left to RecBole (its own
    example datasets such as ml-100k). Raises DatasetNotPrepared with the fix when it cannot.
    """
    if inter_path(name, data_path).is_file():
        return
    src = source or os.environ.get(SOURCE_ENV) or None
    if name not in KNOWN and (src is None or (source is None and not (Path(src) / name).exists())):
        return
    if src is None:
        raise DatasetNotPrepared(f"dataset {name!r} is not prepared ({inter_path(name, data_path)} is missing) "
                                 f"and no source is set; fix: {_fix(name, data_path)}")
    from .prepare import prepare

    try:
        Path(data_path).mkdir(parents=True, exist_ok=True)
        fd = os.open(data_path, os.O_RDONLY)
    except OSError as e:
        raise DatasetNotPrepared(f"cannot prepare dataset {name!r}: output folder {data_path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if inter_path(name, data_path).is_file():
            return
        try:
            prepare(name, src, out=data_path, echo=echo)
        except (SourceError, OSError) as e:
            raise DatasetNotPrepared(f"cannot prepare dataset {name!r}: {e}; fix: {_fix(name, data_path)}") from None
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
