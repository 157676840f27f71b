"""Shared fixtures. Tests run offline: no Hub downloads, ever."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FACES = SHARED / "faces"
DEEPFACE = FACES / "deepface"
MISC = FACES / "misc"
CXR = SHARED / "cxr"


def pytest_collection_modifyitems(config, items):
    if not SHARED.is_dir():
        skip = pytest.mark.skip(reason=f"real test images not found at {SHARED}")
        for item in items:
            if "needs_data" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def runner():
    """The default pipeline (MTCNN + SFace on the CPU), loaded once for the session."""
    from core import Runner

    return Runner(device="cpu")


@pytest.fixture(scope="session")
def obama_pair(runner):
    if not SHARED.is_dir():
        pytest.skip(f"real test images not found at {SHARED}")
    return runner.prepare_pair(MISC / "obama.jpg", MISC / "obama2.jpg")
