"""The registry of download-only weights (core.models.downloads) and ``fetch-weights`` over it:
the plan without network, the offline exit with the list of files, hashes checked and recorded."""

from __future__ import annotations

import hashlib

import pytest

from core.cli import main
from core.errors import DataError, ModelUnavailableError
from core.models import downloads as D


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XFV_PINS", str(tmp_path / "pins.json"))
    monkeypatch.delenv("XFV_CXR_CLIP", raising=False)
    monkeypatch.setattr(D, "RECORDED", tmp_path / "sha256.json")
    return tmp_path


def test_the_plan_names_every_model_its_urls_and_places_without_network(empty_caches, monkeypatch, capsys):
    monkeypatch.setattr(D, "hub_unreachable", lambda timeout=5.0: pytest.fail("the plan must not touch the network"))
    items = D.plan(["all"])
    assert {p.model for p in items} == set(D.MODELS) and all(p.found is None for p in items)
    urls = {p.url for p in items}
    assert "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt" in urls
    assert "https://huggingface.co/deepset/bert-base-cased-squad2/resolve/main/model.safetensors" in urls
    assert any(u.startswith("https://huggingface.co/laion/CLIP-ViT-L-14-laion2B-s32B-b82K/resolve/main/open_clip") for u in urls)
    assert any("microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract/resolve/main/vocab.txt" in u for u in urls)  # the tokenizer
    face = next(p for p in items if p.model == "facenet_vggface2")
    assert face.dest == str(empty_caches / "torch" / "hub" / "checkpoints" / "20180402-114759-vggface2.pt")
    assert main(["fetch-weights", "all", "--plan"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n    from https://") == len(items) and f"0 of {len(items)} files here" in out


def test_offline_fetch_all_exits_2_at_once_with_the_list_of_files(empty_caches, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("no download offline"))
    assert main(["fetch-weights", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download here: the Hugging Face Hub is off (HF_HUB_OFFLINE=1)")
    for model in D.MODELS:
        assert f"\n{model} " in err
    assert "download each file from its URL to its place" in err


def test_a_wrong_hash_removes_the_file_and_a_new_one_is_recorded(empty_caches, monkeypatch):
    monkeypatch.setattr(D, "unavailable_reason", lambda: None)
    body = b"not really a checkpoint"

    def fake_download(p):
        dest = empty_caches / "got" / p.url.rsplit("/", 1)[1]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(body)
        return dest

    monkeypatch.setattr(D, "_download", fake_download)
    items = D.plan(["facenet_vggface2"])
    ((p, path, digest),) = D.fetch(items, record=True)
    assert digest == hashlib.sha256(body).hexdigest() and D.recorded() == {p.key: digest}
    assert D.plan(["facenet_vggface2"])[0].sha256 == digest  # recorded: the next fetch checks it
    body = b"tampered"
    path.unlink()
    with pytest.raises(ModelUnavailableError, match="is not the recorded"):
        D.fetch(D.plan(["facenet_vggface2"]))
    assert not path.exists()


def test_unknown_names_are_refused():
    assert D.names_of(["cbm", "all"])[0] == "cbm_clip_vit_l14"
    with pytest.raises(DataError, match="no downloadable model"):
        D.names_of(["gpt"])
