"""The plugin's models, found by name before RecBole's built-ins.

Each model registers itself with one import line below; every RecBole model class imported here is found.
"""

from recbole_famous import compat as _compat

_compat.disable_import_time_anomaly_detection()

# models: one import line each
from recbole_famous.model.famousrec import FamouSRec  # noqa: E402,F401
from recbole_famous.model.baselines.cl4srec import CL4SRec  # noqa: E402,F401
from recbole_famous.model.baselines.duorec import DuoRec  # noqa: E402,F401
from recbole_famous.model.baselines.crocodile import Crocodile  # noqa: E402,F401
from recbole_famous.model.baselines.emkd import EMKD  # noqa: E402,F401
from recbole_famous.model.baselines.fmlprec import FMLPRec  # noqa: E402,F401
from recbole_famous.model.baselines.mamba4rec import Mamba4Rec  # noqa: E402,F401
from recbole_famous.model.rules import ItemCoOccurrence, ItemTransition, Pop, RecentItems  # noqa: E402,F401
