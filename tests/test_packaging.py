"""Packaging: the plugin installs without ray (Python 3.12+ has no ray 2.6.3), and never imports it."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys

from conftest import REPO


def _options():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    return parser["options"], parser["options.extras_require"]


def _names(lines):
    return {re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in lines if line.strip() and not line.strip().startswith("#")}


def test_requirements_list_what_recbole_needs_except_ray():
    from importlib.metadata import requires

    options, extras = _options()
    ours = _names(options["install_requires"].splitlines())
    recbole = _names(r for r in requires("recbole") if "extra ==" not in r)
    assert "ray" in recbole and "ray" not in ours
    assert recbole - {"ray"} <= ours, recbole - {"ray"} - ours
    # recbole itself only where its ray resolves (Python <= 3.11); --no-deps above that, as the README says
    line = next(x for x in options["install_requires"].splitlines() if x.strip().startswith("recbole"))
    assert 'python_version < "3.12"' in line
    for version in ("3.12", "3.13"):
        assert not re.search(r"<\s*" + re.escape(version), options["python_requires"])
    assert "hyperopt" in _names(extras["tune"].splitlines()) and "hyperopt" in _names(extras["test"].splitlines())


def test_no_plugin_module_imports_ray():
    code = ("import pkgutil, importlib, sys, recbole_famous, run_recbole_famous\n"
            "for m in pkgutil.walk_packages(recbole_famous.__path__, 'recbole_famous.'):\n"
            "    importlib.import_module(m.name)\n"
            "from recbole_famous import pipeline, runner, tuning\n"
            "pipeline.build_config('FamouSRec', 'ml-100k')\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
