"""The vote, defined once: majority over answer classes, a tie to the earliest arrival.

`majority` is the vote of one set of voters; `majority_rows` the same rule for many voter
sets (arrival orders) at once; `top_classes` the tied leaders; `tie_expected_correct` the
expected correctness when ties are broken uniformly at random. Answers become classes in
`dp.answers`; which traces get to vote is each policy's business.
"""

from __future__ import annotations

import numpy as np


def majority(classes: np.ndarray, arrival: np.ndarray, weights: np.ndarray | None = None) -> int:
    """The winning class among `classes` >= 0 (weighted by `weights` if given), or -1.

    `arrival`: (N,) arrival rank of each trace (0 = arrived first). A tie goes to the
    tied class whose first voter arrived earliest, never to the order of a file. THE
    vote; `majority_rows` is the same rule for many voter sets at once.
    """
    classes = np.asarray(classes)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[None, :]
    if w is not None and w.shape[1:] != classes.shape:
        raise ValueError(f"weights shape {w.shape[1:]} != classes shape {classes.shape}")
    arrival = np.asarray(arrival)[None, :]
    return int(majority_rows(classes, np.ones((1, classes.size), dtype=bool), arrival, w)[0])


def top_classes(classes: np.ndarray, voters: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(R, C) bool: the classes that share the largest vote total in each row (several on a tie).

    classes: (N,) int answer classes (-1 = no answer); voters: (R, N) bool;
    weights: (R, N) or None (one vote each). C = max class + 1; rows with no valid voter
    have no top class. Totals within 1e-9 (relative) of the best count as tied.
    """
    classes = np.asarray(classes, dtype=np.int64)
    voters = np.asarray(voters, dtype=bool) & (classes >= 0)[None, :]
    n_classes = int(classes.max()) + 1 if classes.size and classes.max() >= 0 else 0
    if n_classes == 0:
        return np.zeros((voters.shape[0], 0), dtype=bool)
    w = np.ones(voters.shape) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), voters.shape)
    if not np.all(np.isfinite(w[voters])):
        raise ValueError("weights of voting answers must be finite")
    onehot = (classes[:, None] == np.arange(n_classes)[None, :])  # (N, C)
    totals = (w * voters) @ onehot  # (R, C)
    present = voters.astype(np.float64) @ onehot > 0
    totals = np.where(present, totals, -np.inf)
    best = totals.max(axis=1, keepdims=True)
    return present & (totals >= best - 1e-9 * np.abs(best))


def arrival_ranks(orders: np.ndarray) -> np.ndarray:
    """(R, N) arrival rank of each trace from (R, N) arrival orders (trace positions in arrival order)."""
    orders = np.asarray(orders, dtype=np.int64)
    ranks = np.empty_like(orders)
    np.put_along_axis(ranks, orders, np.broadcast_to(np.arange(orders.shape[1]), orders.shape), axis=1)
    return ranks


def majority_rows(classes: np.ndarray, voters: np.ndarray, arrival: np.ndarray,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """(R,) winning class per row: the vote of `majority` over the traces where voters[r] is True.

    classes: (N,) int answer classes (-1 = no answer); voters: (R, N) bool;
    arrival: (R, N) or (N,) arrival rank of each trace in that row's order (`arrival_ranks`);
    weights: (R, N) or None. Among the top classes (`top_classes`) the winner is the one
    whose earliest voter has the smallest arrival rank. Rows with no valid voter give -1.
    """
    classes = np.asarray(classes, dtype=np.int64)
    voters = np.asarray(voters, dtype=bool) & (classes >= 0)[None, :]
    top = top_classes(classes, voters, weights)  # (R, C)
    n_rows, n_classes = top.shape
    if n_classes == 0:
        return np.full(n_rows, -1, dtype=np.int64)
    arrival = np.broadcast_to(np.asarray(arrival, dtype=np.int64), voters.shape)
    first = np.full((n_rows, n_classes), np.iinfo(np.int64).max)  # (R, C) earliest voter's rank
    r, t = np.nonzero(voters)
    np.minimum.at(first, (r, classes[t]), arrival[r, t])
    first = np.where(top, first, np.iinfo(np.int64).max)
    return np.where(top.any(axis=1), first.argmin(axis=1), -1)


def tie_expected_correct(classes: np.ndarray, correct_classes, voters: np.ndarray | None = None) -> np.ndarray:
    """(R,) expected correctness of the vote when ties are broken uniformly at random:
    the share of correct classes among the top classes (0 when none). Equals the mean of
    `majority_rows` over uniformly random arrival orders for unweighted votes."""
    classes = np.asarray(classes, dtype=np.int64)
    voters = np.ones((1, classes.size), dtype=bool) if voters is None else voters
    top = top_classes(classes, voters)
    ok = np.zeros(top.shape[1], dtype=bool)
    good = [int(c) for c in correct_classes if 0 <= int(c) < ok.size]
    ok[good] = True
    n_top = top.sum(axis=1)
    return np.where(n_top > 0, (top & ok[None, :]).sum(axis=1) / np.maximum(n_top, 1), 0.0)
