"""Right padding (RecBole's) to left padding (FMLP-Rec's), shared by every model that needs it.

RecBole stores a history as ``[i1, ..., it, 0, ..., 0]`` with its length ``t``. A Fourier transform
along the sequence axis, a filter over it, or a recurrence all see a different signal for every
``t`` in that layout; with left padding, ``[0, ..., 0, i1, ..., it]``, the most recent item always
sits at the last position, whatever the length. Anything stored after position ``t`` (RecBole
writes zeros there, but nothing relies on it) is dropped.
"""
import torch


def right_to_left_pad(item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
    """Move each row's first ``item_seq_len`` entries to the end of the row, zeros before them.

    Args:
        item_seq: (B, n) integer ids, right padded.
        item_seq_len: (B,) number of real items per row, 0 <= len <= n.
    Returns:
        (B, n) ids, left padded: ``out[b, n - len_b:] == item_seq[b, :len_b]``, ``out[b, :n - len_b] == 0``.
    """
    n = item_seq.size(1)
    lengths = item_seq_len.to(item_seq.device).long().clamp(0, n).unsqueeze(1)  # (B, 1)
    pos = torch.arange(n, device=item_seq.device).unsqueeze(0)  # (1, n)
    src = pos - (n - lengths)  # where position p reads from in the right-padded row
    real = src >= 0
    out = item_seq.gather(1, src.clamp(min=0))
    return out.masked_fill(~real, 0)
