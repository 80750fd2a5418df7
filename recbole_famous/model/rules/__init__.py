"""Reference models that train nothing (``docs/reference_rules.md``): what the data give away for free.

Each is fitted by the trainer in one pass over the training split (``one_pass``; no epochs, no optimiser), runs
through the same runner, data pipeline and full-ranking evaluator as the learned models, and saves a checkpoint
that ``recommend`` serves. ``Pop`` is RecBole's own, run on the plugin's sequential protocol.
"""

from recbole_famous.model.rules.base import ReferenceRule, is_one_pass
from recbole_famous.model.rules.item_cooccurrence import ItemCoOccurrence
from recbole_famous.model.rules.item_transition import ItemTransition
from recbole_famous.model.rules.pop import Pop
from recbole_famous.model.rules.recent_items import RecentItems

__all__ = ["ItemCoOccurrence", "ItemTransition", "Pop", "RecentItems", "ReferenceRule",
           "is_one_pass"]
