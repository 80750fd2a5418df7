"""Small real slices of RecBole's packaged MovieLens-100K, for tests and benchmarks that must run in seconds."""

from __future__ import annotations

import os


def ml100k_inter_path() -> str:
    """RecBole's packaged ``ml-100k.inter`` (inside its wheel)."""
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k", "ml-100k.inter")


def write_ml100k_slice(root: str, name: str, users: int) -> str:
    """The interactions of ml-100k's first ``users`` users (file order) as dataset ``name``:
    ``root/name/name.inter``. Returns ``root`` (the ``data_path``)."""
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    seen = set()
    with open(ml100k_inter_path(), encoding="utf-8") as src, \
            open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as dst:
        dst.write(src.readline())
        for line in src:
            user = line.split("\t", 1)[0]
            if user not in seen and len(seen) == users:
                continue
            seen.add(user)
            dst.write(line)
    return str(root)
