"""JSON-ready summaries of results."""

from __future__ import annotations

import json
import math

import numpy as np

from core.types import jsonable


def test_jsonable_keeps_small_arrays_drops_maps_and_undefined_numbers():
    extras = {"grid": np.arange(4, dtype=np.float32).reshape(2, 2), "map": np.zeros((112, 112), np.float32),
              "candidates": [{"mask": "oim", "sm": math.nan}, {"mask": "um", "sm": np.float64(2.5)}], "inf": np.float32("inf"), 3: True}  # fmt: skip
    out = jsonable(extras)
    assert out["grid"] == [[0.0, 1.0], [2.0, 3.0]]
    assert out["map"] == "<array float32 (112, 112)>"
    assert out["candidates"] == [{"mask": "oim", "sm": None}, {"mask": "um", "sm": 2.5}]
    assert out["inf"] is None and out["3"] is True
    json.loads(json.dumps(out, allow_nan=False))  # strict JSON
