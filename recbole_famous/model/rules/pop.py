"""RecBole's own ``Pop``, run on the plugin's sequential protocol.

Through RecBole's general pipeline ``Pop`` would be evaluated with each user's training items excluded from the
ranking. The plugin's protocol (leave-one-out on sequences, full ranking, seen items not excluded) is RecBole's
sequential one, so this subclass changes only the model type; RecBole's code counts the training targets
(``calculate_loss``) and ranks by the count. It is fitted in one pass (``one_pass``), as RecBole's
``TraditionalTrainer`` runs it.
"""

import torch
from recbole.model.general_recommender.pop import Pop as RecBolePop
from recbole.utils import ModelType


class Pop(RecBolePop):
    type = ModelType.SEQUENTIAL
    one_pass = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.ITEM_SEQ = self.ITEM_ID + config["LIST_SUFFIX"]

    def full_sort_predict(self, interaction):
        """RecBole's, sized by the batch's histories when it carries no user ids (serving a checkpoint)."""
        if self.USER_ID in interaction.interaction:
            return super().full_sort_predict(interaction)
        rows = interaction[self.ITEM_SEQ].shape[0]
        scores = self.item_cnt.to(torch.float64).squeeze(-1) / self.max_cnt.to(torch.float64)
        return scores.unsqueeze(0).expand(rows, -1).reshape(-1)
