"""Sparse counting for the reference rules (scipy, on the CPU): per-row top-k of a count matrix, as fixed-shape
(n, k) tensors zero-padded (item 0, weight 0); and the item-item cosine matrix from user-item pairs, as a sparse
CSR matrix (all of it, or each row's top k)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def _top_k(matrix: sp.csr_matrix, k: int, tie: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k columns of largest value, equal values ordered by ``tie`` (larger first), then column."""
    n = matrix.shape[0]
    items = np.zeros((n, k), dtype=np.int64)
    values = np.zeros((n, k), dtype=np.float64)
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    for row in range(n):
        lo, hi = indptr[row], indptr[row + 1]
        if lo == hi:
            continue
        cols, vals = indices[lo:hi], data[lo:hi]
        order = np.lexsort((cols, -tie[cols], -vals))[:k]  # last key first: value, then tie, then column
        items[row, : len(order)] = cols[order]
        values[row, : len(order)] = vals[order]
    return torch.from_numpy(items), torch.from_numpy(values)


def top_k_rows(rows: torch.Tensor, cols: torch.Tensor, n: int, k: int, tie: torch.Tensor):
    """Count the (row, col) pairs into an n x n matrix and keep each row's top k: (items, counts)."""
    ones = np.ones(len(rows), dtype=np.float64)
    counts = sp.coo_matrix((ones, (rows.numpy(), cols.numpy())), shape=(n, n)).tocsr()  # duplicates summed
    counts.sum_duplicates()
    return _top_k(counts, k, tie.double().numpy())


def cosine_matrix(users: torch.Tensor, items: torch.Tensor, n_items: int, k: int = 0) -> sp.csr_matrix:
    """Item-item cosine over users' item sets, ``c[i, j] / sqrt(c[i, i] c[j, j])`` with the diagonal dropped, as a
    sparse n_items x n_items CSR matrix of float64: row i holds i's neighbours. ``k > 0`` keeps each row's k
    heaviest (equal weights by item popularity in the sets, then item id); ``k = 0`` keeps every nonzero."""
    _, user_index = np.unique(users.numpy(), return_inverse=True)
    x = sp.coo_matrix((np.ones(len(items)), (user_index, items.numpy())),
                      shape=(int(user_index.max()) + 1 if len(user_index) else 0, n_items)).tocsr()
    x.sum_duplicates()
    x.data[:] = 1.0  # sets: an item twice in one history counts once
    co = (x.T @ x).tocsr()
    diag = co.diagonal()
    norm = np.sqrt(np.where(diag > 0, diag, 1.0))
    co = (sp.diags(1.0 / norm) @ co @ sp.diags(1.0 / norm)).tocsr()
    co.setdiag(0.0)
    co.eliminate_zeros()
    co = co.tocsr()
    if k <= 0:
        co.sort_indices()
        return co
    neighbours, weights = _top_k(co, k, diag.astype(np.float64))
    rows = np.repeat(np.arange(n_items), k)
    kept = sp.csr_matrix((weights.numpy().ravel().astype(np.float64), (rows, neighbours.numpy().ravel())),
                         shape=(n_items, n_items))
    kept.eliminate_zeros()  # the zero padding of rows with fewer than k neighbours
    kept.sort_indices()
    return kept
