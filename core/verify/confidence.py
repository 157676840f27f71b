"""C-Score confidence (Knoche et al., "Explainable Model-Agnostic Similarity and Confidence
in Face Verification", section 3.1, eqs. 2-3):

    c(d) = L / (1 + exp(-k (d - d0))) + b,   fitted by least squares ('dogbox') to the
           bin-wise ratio genuine / (genuine + impostor) of a 400-bin histogram of the
           cosine distances of labelled pairs, then clipped to [0, 1];
    C(d) = c(d) if d <= t else 1 - c(d).

The paper reads the ratio as "genuine to impostor"; its curve runs from 1 to 0, which is
the share genuine / (genuine + impostor), so that is what is fitted. Empty bins carry no
ratio and are left out of the fit. The paper states C lies in [0.5, 1]; that holds when
the fitted midpoint falls on t. Where it does not, the few distances between d0 and t
would get C < 0.5, so C is also clipped to [0.5, 1] (a documented deviation).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import curve_fit

from ..errors import CalibrationError

log = logging.getLogger(__name__)

BINS = 400


def sigmoid(d: float | np.ndarray, L: float, d0: float, k: float, b: float) -> np.ndarray:
    """Eq. 2 of the paper."""
    z = np.clip(-k * (np.asarray(d, dtype=np.float64) - d0), -500, 500)
    return L / (1.0 + np.exp(z)) + b


@dataclass(frozen=True)
class CScore:
    L: float
    d0: float
    k: float
    b: float
    threshold: float  # t, on cosine distance
    bins: int = BINS

    def c(self, distance: float | np.ndarray) -> np.ndarray:
        """The fitted, clipped curve c(d) in [0, 1]."""
        return np.clip(sigmoid(distance, self.L, self.d0, self.k, self.b), 0.0, 1.0)

    def __call__(self, distance: float | np.ndarray) -> float | np.ndarray:
        """C(d) (eq. 3), in [0.5, 1]."""
        d = np.asarray(distance, dtype=np.float64)
        c = self.c(d)
        out = np.clip(np.where(d <= self.threshold, c, 1.0 - c), 0.5, 1.0)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return asdict(self)


def ratio_histogram(distances: np.ndarray, same: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin centres, genuine share per bin (NaN where empty) and the pair count per bin."""
    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    lo, hi = float(d.min()), float(d.max())
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    gen, _ = np.histogram(d[y], bins=edges)
    imp, _ = np.histogram(d[~y], bins=edges)
    total = gen + imp
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, gen / np.maximum(total, 1), np.nan)
    return 0.5 * (edges[1:] + edges[:-1]), ratio, total


def fit_cscore(distances: np.ndarray, same: np.ndarray, threshold: float, bins: int = BINS) -> CScore:
    """Fit eq. 2 to the genuine share of the histogram with the 'dogbox' method."""
    y = np.asarray(same, dtype=bool)
    if y.sum() < 2 or (~y).sum() < 2:
        raise CalibrationError("the C-Score needs at least two genuine and two impostor pairs")
    centres, ratio, _ = ratio_histogram(distances, y, bins)
    keep = np.isfinite(ratio)
    x, r = centres[keep], ratio[keep]
    spread = float(np.std(distances)) or 0.1
    best = None
    # a decreasing curve from ~1 to ~0 around t; a few slopes make the fit robust
    for k0 in (5.0 / spread, 20.0 / spread, 1.0 / spread):
        p0 = (-1.0, threshold, k0, 1.0)
        try:
            popt, _ = curve_fit(sigmoid, x, r, p0=p0, method="dogbox", maxfev=20000)
        except (RuntimeError, ValueError) as e:
            log.debug("C-Score fit from k0=%s failed: %s", k0, e)
            continue
        err = float(np.sum((sigmoid(x, *popt) - r) ** 2))
        if best is None or err < best[1]:
            best = (popt, err)
    if best is None:
        raise CalibrationError("the C-Score sigmoid could not be fitted to these distances")
    L, d0, k, b = (float(v) for v in best[0])
    return CScore(L=L, d0=d0, k=k, b=b, threshold=float(threshold), bins=bins)
