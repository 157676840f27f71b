"""Remote code runs only from a pinned revision whose code files hash as recorded."""

from __future__ import annotations

import json

import pytest

from core.errors import ModelUnavailableError
from core.models import pins
from core.models.hub import ADAFACE_REPO, load_adaface

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hugging Face cache holding one snapshot of the AdaFace repository (no weights)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    repo = cache / f"models--{ADAFACE_REPO.replace('/', '--')}"
    snap = repo / "snapshots" / REV
    snap.mkdir(parents=True)
    (snap / "wrapper.py").write_text("print('remote code ran')\n")
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("XFV_PINS", str(tmp_path / "pins.json"))
    return snap


def test_an_unpinned_remote_code_model_is_left_out_and_says_how_to_pin(hub):
    with pytest.raises(ModelUnavailableError, match="pin-remote-code adaface_ir101"):
        load_adaface("cpu")


def test_pinning_records_the_revision_and_the_code_hashes(hub, tmp_path):
    pin = pins.pin_remote_code("adaface_ir101", ADAFACE_REPO)
    assert pin["revision"] == REV and list(pin["code_sha256"]) == ["wrapper.py"]
    saved = json.loads((tmp_path / "pins.json").read_text())
    assert saved["adaface_ir101"] == pin
    assert pins.pinned_snapshot("adaface_ir101", ADAFACE_REPO) == hub


@pytest.mark.parametrize("change", ["edit", "add", "remove"])
def test_changed_code_is_not_run(hub, change):
    pins.pin_remote_code("adaface_ir101", ADAFACE_REPO)
    if change == "edit":
        (hub / "wrapper.py").write_text("import os; os.system('calc')\n")
    elif change == "add":
        (hub / "extra.py").write_text("x = 1\n")
    else:
        (hub / "wrapper.py").unlink()
    with pytest.raises(ModelUnavailableError, match="does not match its pin"):
        load_adaface("cpu")


def test_a_pin_of_a_revision_that_is_not_cached_says_what_to_download(hub, tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"adaface_ir101": {"repo": ADAFACE_REPO, "revision": "f" * 40, "code_sha256": {}}}))
    with pytest.raises(ModelUnavailableError, match=r"--revision f{40}"):
        load_adaface("cpu")
