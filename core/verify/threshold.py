"""The decision threshold on cosine distance: the one that maximises verification accuracy,
chosen by 10-fold cross-validation as on LFW (Knoche et al., section 3.1): for each fold,
the threshold maximising accuracy on the other nine folds is evaluated on the fold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CalibrationError


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The distance threshold t (genuine when d <= t) of highest accuracy, and that accuracy.

    Every distinct accuracy is reached by a threshold midway between two consecutive
    sorted distances (or just below the first / at the last), so all are tried exactly.
    Ties go to the threshold in the middle of the widest best interval.
    """
    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if d.size == 0:
        raise CalibrationError("no pairs to choose a threshold from")
    order = np.argsort(d, kind="stable")
    ds, ys = d[order], y[order]
    # accuracy if the first k sorted pairs are called genuine, k = 0..n
    tp = np.concatenate([[0], np.cumsum(ys)])
    fp = np.concatenate([[0], np.cumsum(~ys)])
    tn = (~ys).sum() - fp
    acc = (tp + tn) / len(ds)
    # a cut after k is only possible where ds[k-1] < ds[k]
    valid = np.ones(len(ds) + 1, dtype=bool)
    valid[1:-1] = ds[1:] > ds[:-1]
    acc_valid = np.where(valid, acc, -1.0)
    best = acc_valid.max()
    ks = np.flatnonzero(acc_valid == best)
    lows = np.where(ks == 0, ds[0] - 1e-6, ds[np.maximum(ks - 1, 0)])
    highs = np.where(ks == len(ds), ds[-1] + 1e-6, ds[np.minimum(ks, len(ds) - 1)])
    i = int(np.argmax(highs - lows))
    k = ks[i]
    if k == 0:
        t = ds[0] - 1e-6
    elif k == len(ds):
        t = ds[-1]
    else:
        t = 0.5 * (ds[k - 1] + ds[k])
    return float(t), float(best)


@dataclass(frozen=True)
class CVThreshold:
    threshold: float  # the mean of the fold thresholds
    fold_thresholds: tuple[float, ...]
    fold_accuracies: tuple[float, ...]  # each on its held-out fold

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def accuracy_std(self) -> float:
        return float(np.std(self.fold_accuracies))


def cv_threshold(distances: np.ndarray, same: np.ndarray, folds: int = 10, seed: int = 0) -> CVThreshold:
    """10-fold cross-validated threshold. Folds are stratified by label and shuffled with
    ``seed``; the returned threshold is the mean of the ten fold thresholds."""
    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if y.sum() < folds or (~y).sum() < folds:
        raise CalibrationError(
            f"cross-validation over {folds} folds needs at least {folds} genuine and {folds} impostor pairs; "
            f"got {int(y.sum())} genuine and {int((~y).sum())} impostor"
        )
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(d), dtype=int)
    for label in (True, False):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        fold_of[idx] = np.arange(len(idx)) % folds
    ts, accs = [], []
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        t, _ = best_threshold(d[train], y[train])
        ts.append(t)
        accs.append(float(((d[test] <= t) == y[test]).mean()))
    return CVThreshold(float(np.mean(ts)), tuple(ts), tuple(accs))
