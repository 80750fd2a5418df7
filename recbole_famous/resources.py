"""Where the package's non-Python files are: the ``props/`` configuration layers.

``props/`` is the top-level folder of the source tree; a wheel ships the same files inside the package, as
``recbole_famous/props/`` (``setup.cfg`` maps the package-data folder ``recbole_famous.props`` to ``props/``).
``PROPS_DIR`` is the first of the two that exists: the installed copy, else the source tree's (an editable
install or ``PYTHONPATH`` pointing at the checkout). With neither, the install is broken: ``props_dir`` raises
``MissingResource`` instead of letting RecBole run with its own defaults in place of the paper's protocol.
"""

from __future__ import annotations

import os

from recbole_famous.errors import MissingResource

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_INSTALLED = os.path.join(_PACKAGE, "props")
_SOURCE_TREE = os.path.join(os.path.dirname(_PACKAGE), "props")

PROTOCOL_FILE = "overall.yaml"


def _find() -> str | None:
    if os.path.isfile(os.path.join(_INSTALLED, PROTOCOL_FILE)):
        return _INSTALLED
    # the source tree: only next to the checkout's setup.cfg, never some other site-packages/props folder
    if os.path.isfile(os.path.join(_SOURCE_TREE, PROTOCOL_FILE)) and \
            os.path.isfile(os.path.join(os.path.dirname(_PACKAGE), "setup.cfg")):
        return _SOURCE_TREE
    return None


PROPS_DIR = _find() or _INSTALLED


def props_dir(root: str | None = None) -> str:
    """The props folder (``root`` when given), checked to hold the protocol layer ``overall.yaml``."""
    root = root or PROPS_DIR
    if not os.path.isfile(os.path.join(root, PROTOCOL_FILE)):
        raise MissingResource(
            f"the protocol layer {os.path.join(root, PROTOCOL_FILE)} is missing: recbole-famous is installed "
            f"without its props/ files (reinstall it from a complete wheel or the source tree)"
        )
    return root
