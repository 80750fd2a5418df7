"""Convert a published source into RecBole atomic files under `<out>/<name>/`.

Pick a reader (by sniffing the source's files, or the one named), read everything into
memory (bad input fails here, before anything is written), then write `<name>.inter`,
`<name>.item_map` and `<name>.prepared.json` into a temporary folder and move them into place,
`.inter` last, so `<name>.inter` exists only when the conversion is complete.
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from recbole_famous import resources

from . import stats
from recbole_famous.errors import SourceError
from .filtering import filter_by_counts, parse_intervals
from .readers import READERS

KNOWN = ("Arts", "Instruments", "Office", "OR", "Tmall")
HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
PROPS = Path(resources.PROPS_DIR)
FIVE_CORE = {"user_inter_num_interval": "[5,inf)", "item_inter_num_interval": "[5,inf)"}


def source_files(name, source):
    """The files of a source: a file itself, or a folder's files (its `<name>/` subfolder if any)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(path, "source not found")
    if path.is_file():
        return [path]
    if (path / name).is_dir():
        path = path / name
    files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise SourceError(path, "folder holds no files")
    return files


def choose_reader(files, fmt=None):
    """(reader module, files it reads); by sniffing unless fmt names the reader."""
    where = files[0] if len(files) == 1 else files[0].parent
    if fmt is not None:
        reader = READERS.get(fmt)
        if reader is None:
            raise SourceError(where, f"unknown format {fmt!r}; known: {', '.join(READERS)}")
        chosen = reader.detect(files) or reader.detect(files, forced=True)
        if not chosen:
            raise SourceError(where, f"no file in {fmt} format found")
        return reader, chosen
    for reader in READERS.values():
        chosen = reader.detect(files)
        if chosen:
            return reader, chosen
    raise SourceError(where, "unknown format: no reader recognises "
                      f"{', '.join(f.name for f in files[:5])} (formats: {', '.join(READERS)}; name one with --format)")


def recbole_filter(name):
    """The count filters RecBole will apply to `name`: props/overall.yaml, then props/dataset/<name>.yaml."""
    import yaml

    settings = dict(FIVE_CORE)
    for path in (PROPS / "overall.yaml", PROPS / "dataset" / f"{name}.yaml"):
        if path.is_file():
            conf = yaml.safe_load(path.read_text()) or {}
            settings.update({k: conf[k] for k in FIVE_CORE if k in conf})
    return settings


def stats_after_filter(name, users, items):
    """Table1 after the repeated count filter that RecBole applies under this project's props."""
    conf = recbole_filter(name)
    keep = filter_by_counts(users, items, parse_intervals(conf["user_inter_num_interval"]),
                            parse_intervals(conf["item_inter_num_interval"]))
    return stats.from_columns([u for u, k in zip(users, keep) if k], [i for i, k in zip(items, keep) if k])


def _fmt_time(t):
    return str(int(t)) if float(t).is_integer() else repr(float(t))


def _write(tmp, name, data, info):
    with open(tmp / f"{name}.inter", "w", encoding="utf-8") as f:
        f.write(HEADER)
        f.writelines(f"{u}\t{i}\t{_fmt_time(t)}\n" for u, i, t in zip(data.users, data.items, data.times))
    with open(tmp / f"{name}.item_map", "w", encoding="utf-8") as f:
        f.write("item_id\toriginal_id\n")
        f.writelines(f"{tok}\t{orig}\n" for tok, orig in data.item_map)
    (tmp / f"{name}.prepared.json").write_text(json.dumps(info, indent=2) + "\n")


def write_atomically(out, name, data, info):
    """Write into a temporary folder under `out`, then move into `out/name/`, `.inter` last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset folder should not be
    try:
        _write(tmp, name, data, info)
        target = out / name
        if not target.exists():
            try:
                os.replace(tmp, target)
                return target
            except OSError:  # another process created it meanwhile: replace file by file
                pass
        for suffix in (".item_map", ".prepared.json", ".inter"):
            os.replace(tmp / f"{name}{suffix}", target / f"{name}{suffix}")
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def reader_options(name, reader, overrides=None, where="."):
    """The options of `reader` (its OPTIONS: name -> default): props/dataset/<name>.yaml's values for them, then
    `overrides` ({key: value}, e.g. from `prepare --option`); an unknown override key is an error."""
    import yaml

    known = dict(getattr(reader, "OPTIONS", {}))
    path = PROPS / "dataset" / f"{name}.yaml"
    if path.is_file():
        conf = yaml.safe_load(path.read_text()) or {}
        known.update({k: conf[k] for k in known if k in conf})
    for key, value in (overrides or {}).items():
        if key not in known:
            allowed = ", ".join(known) or "none"
            raise SourceError(where, f"the {reader.FORMAT} reader has no option {key!r} (options: {allowed})")
        known[key] = value
    return known


def prepare(name, source, out="dataset", fmt=None, echo=print, options=None):
    """Convert `source` into `out/name/`; returns the info written to `<name>.prepared.json`. `options`: the
    reader's options over those of props/dataset/<name>.yaml (``reader_options``)."""
    start = time.perf_counter()
    files = source_files(name, source)
    reader, chosen = choose_reader(files, fmt)
    opts = reader_options(name, reader, options, where=chosen[0])
    data = reader.read(chosen, **opts)
    converted = stats.from_columns(data.users, data.items)
    filtered = stats_after_filter(name, data.users, data.items)
    info = {"name": name, "format": reader.FORMAT, "files": [str(f.resolve()) for f in chosen],
            "as_converted": converted.as_dict(), "after_recbole_filter": filtered.as_dict(),
            "recbole_filter": recbole_filter(name)}
    if opts:
        info["reader_options"] = opts
    target = write_atomically(out, name, data, info)
    info["seconds"] = round(time.perf_counter() - start, 2)
    if echo:
        echo(f"{name}: {reader.FORMAT} from {', '.join(f.name for f in chosen)} -> {target}/ "
             f"in {info['seconds']:.1f} s")
        echo(stats.format_table({f"{name} as converted": converted,
                                 f"{name} after RecBole filter": filtered}))
    return info
