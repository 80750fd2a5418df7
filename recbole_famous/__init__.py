"""recbole-famous: FamouSRec (WWW 2025), a mixture of heterogeneous sequential experts with a
frequency-augmented router, as a RecBole 1.2.1 plugin.

Importing the package applies the cheap process-wide RecBole compatibility fixes (``compat.apply``);
the runner, config and models import RecBole itself on first use.
"""

from recbole_famous import compat as _compat

_compat.apply()

__version__ = "0.1.0"


def run(model=None, dataset=None, config_files=None, overrides=None, saved=True) -> dict:
    """Train, validate and test one model on one dataset (see ``recbole_famous.runner.run``)."""
    from recbole_famous.runner import run as _run

    return _run(model, dataset, config_files, overrides, saved=saved)
