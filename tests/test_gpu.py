"""The GPU (tests marked ``gpu``, skipped without CUDA): every offline method's maps on CUDA equal
the CPU's within a stated tolerance, and the half-precision mode (``XFV_HALF=1``, float16 for
black-box batches) moves the X-Maps little. The machines this project is built on have no GPU:
these run where one is (``python -m pytest -m gpu tests/test_gpu.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import Runner
from core.explainers import perturb

from .conftest import MISC

pytestmark = [pytest.mark.gpu, pytest.mark.needs_data, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU here)")]

#: Methods whose maps are continuous in the embeddings: equal within TOLERANCE of the map's range.
CONTINUOUS = ["xmap1", "xmap2", "xmap3", "rise", "single_removal", "single_aggregation", "cam", "grad_cam", "grad_cam_pp"]
#: Greedy searches choose among near-tied regions, where float rounding may pick another: compared by correlation.
GREEDY = ["greedy_removal", "greedy_aggregation", "minplus_average"]
TOLERANCE = 1e-3  # of max |map|: CUDA's convolutions round differently from the CPU's (cuDNN, TF32 off)


@pytest.fixture(scope="module")
def runners():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # float32 as the CPU computes it
    cpu, gpu = Runner(device="cpu"), Runner(device="cuda")
    return cpu, gpu, cpu.prepare_pair(MISC / "obama.jpg", MISC / "obama2.jpg")


def _maps(runner, pair, method, **knobs):
    perturb.clear_cache()
    exp = runner.explain(pair, methods=[method], preset="fast", **knobs).explanations[0]
    assert exp.ok, exp.error
    return exp.maps


@pytest.mark.parametrize("method", CONTINUOUS + GREEDY)
def test_maps_on_the_gpu_equal_the_cpus(runners, method):
    cpu, gpu, pair = runners
    for a, b in zip(_maps(cpu, pair, method), _maps(gpu, pair, method), strict=True):
        if method in CONTINUOUS:
            assert np.abs(a - b).max() <= TOLERANCE * max(float(np.abs(a).max()), 1e-12), method
        else:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99, method


def test_half_precision_moves_the_xmaps_little(runners, monkeypatch):
    _, gpu, pair = runners
    exact = _maps(gpu, pair, "xmap2")
    monkeypatch.setenv("XFV_HALF", "1")
    assert perturb.half_dtype(gpu.embedder.device) == torch.float16
    half = _maps(gpu, pair, "xmap2")
    for a, b in zip(exact, half, strict=True):  # bfloat16 on a CPU (fewer mantissa bits) measured Pearson >= 0.9997
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999 and not np.array_equal(a, b)
