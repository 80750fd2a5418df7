"""``props/model/FamouSRec.yaml`` generated from the settings of ``famousrec_config.py``, where each is declared
once: print it, check the committed file (exit 1 if it differs) or write it.

    python -m recbole_famous.model.famousrec_yaml [--check | --write]   (from the repository root)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from recbole_famous.model.famousrec_config import FamouSRecConfig

YAML_PATH = os.path.join("props", "model", "FamouSRec.yaml")
_HEADER = """\
# FamouSRec (WWW 2025): every knob of recbole_famous/model/famousrec.py, with its default.
# Generated from recbole_famous/model/famousrec_config.py (python -m recbole_famous.model.famousrec_yaml --write);
# edit the settings there. Equation numbers are the paper's; docs/model.md restates them as implemented (M1-M30,
# with the paper's beside each) and lists the decisions the paper leaves open (its section 11, D1-D24).
"""


def _yaml_value(value) -> str:
    if value is None:
        return "~"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, float) and (abs(value) < 1e-3 and value != 0):
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e-{int(exponent[1:])}"
    return str(value)


def yaml_text() -> str:
    """``props/model/FamouSRec.yaml`` as generated from the settings (``loss_type`` stays in overall.yaml)."""
    lines = [_HEADER.rstrip("\n")]
    for f in dataclasses.fields(FamouSRecConfig):
        meta = f.metadata
        if meta["section"] == "overall":
            break
        if meta["section"]:
            lines += ["", f"# --- {meta['section']} ---"]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        text = f"{f.name}: {_yaml_value(default)}"
        if not meta["doc"]:
            lines.append(text)
            continue
        first, *rest = meta["doc"].split("\n")
        width = 28 if len(text) < 28 else len(text) + 3
        lines.append(f"{text.ljust(width)}# {first}")
        lines += [" " * width + f"# {more}" for more in rest]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print, check or write props/model/FamouSRec.yaml from the "
                                                 "settings declared in recbole_famous/model/famousrec_config.py.")
    parser.add_argument("--write", action="store_true", help=f"write {YAML_PATH} (run from the repository root)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {YAML_PATH} differs from the settings")
    args = parser.parse_args(argv)
    text = yaml_text()
    if args.write:
        with open(YAML_PATH, "w", encoding="utf-8") as f:
            f.write(text)
    elif args.check:
        with open(YAML_PATH, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{YAML_PATH} differs from recbole_famous/model/famousrec_config.py: run with --write")
                return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
