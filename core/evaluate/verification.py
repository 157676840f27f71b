"""Verification metrics from similarity scores and labels: accuracy at a threshold, ROC
AUC (with ties counted half), equal error rate and TAR at a given FAR."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true accept rates for every distinct score threshold (accept when s >= thr),
    from (0, 0) to (1, 1), and the thresholds."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = np.cumsum(~y)[distinct]
    far = np.r_[0.0, fps / max(1, (~y).sum())]
    tar = np.r_[0.0, tps / max(1, y.sum())]
    return far, tar, np.r_[np.inf, s[distinct]]


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    far, tar, _ = roc_curve(scores, same)
    return float(np.trapezoid(tar, far))


def eer(scores: np.ndarray, same: np.ndarray) -> float:
    """Equal error rate: where the false accept rate equals the false reject rate
    (linearly interpolated along the ROC)."""
    far, tar, _ = roc_curve(scores, same)
    frr = 1.0 - tar
    diff = far - frr
    i = int(np.flatnonzero(diff >= 0)[0])
    if i == 0 or diff[i] == 0:
        return float(far[i])
    # interpolate between points i-1 and i
    w = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(far[i - 1] + w * (far[i] - far[i - 1]))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far_target: float) -> float:
    """The highest true accept rate whose false accept rate is at most ``far_target``."""
    far, tar, _ = roc_curve(scores, same)
    ok = far <= far_target
    return float(tar[ok].max()) if ok.any() else 0.0


@dataclass(frozen=True)
class VerificationMetrics:
    n_pairs: int
    n_genuine: int
    n_impostor: int
    accuracy: float | None  # at the given threshold
    roc_auc: float
    eer: float
    tar_at_far_1e3: float
    failed: int = 0  # pairs that could not be scored (no face, bad image)

    def to_dict(self) -> dict:
        return asdict(self)


def verification_metrics(
    similarities: np.ndarray, same: np.ndarray, threshold_similarity: float | None = None, failed: int = 0
) -> VerificationMetrics:
    s = np.asarray(similarities, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if y.all() or not y.any():
        raise DataError("metrics need both genuine and impostor pairs")
    acc = None if threshold_similarity is None else float(((s >= threshold_similarity) == y).mean())
    return VerificationMetrics(
        n_pairs=len(s),
        n_genuine=int(y.sum()),
        n_impostor=int((~y).sum()),
        accuracy=acc,
        roc_auc=roc_auc(s, y),
        eer=eer(s, y),
        tar_at_far_1e3=tar_at_far(s, y, 1e-3),
        failed=failed,
    )
