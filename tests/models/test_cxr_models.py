"""What the chest X-ray CLIP needs on the disk (``cxr_status``), and fetching it all at once
(``fetch_cxr``): on a fake local Hugging Face cache, with the Hub calls mocked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelUnavailableError
from core.models import cxr as X
from core.models import weights as W

SHA = "0123456789abcdef0123456789abcdef01234567"
BIOMEDCLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 512,
        "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "image_size": 224},
        "text_cfg": {"hf_model_name": X.BIOMEDBERT, "hf_tokenizer_name": X.BIOMEDBERT, "context_length": 256},
    },
    "preprocess_cfg": {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]},
}


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache in ``tmp_path``, in use for this test."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("XFV_CXR_CLIP", raising=False)
    monkeypatch.delenv("XFV_CXR_HEAD", raising=False)
    return cache


def put(cache: Path, repo: str, name: str, data: bytes | str = b"x") -> Path:
    """A file of ``repo`` in the cache's layout (snapshots/<commit>/name, refs/main)."""
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(SHA)
    path = base / "snapshots" / SHA / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def put_biomedclip(cache: Path, weights: str = "open_clip_pytorch_model.bin") -> None:
    put(cache, X.BIOMEDCLIP, "open_clip_config.json", json.dumps(BIOMEDCLIP_CONFIG))
    put(cache, X.BIOMEDCLIP, weights)
    put(cache, X.BIOMEDBERT, "config.json", "{}")
    put(cache, X.BIOMEDBERT, "vocab.txt", "[PAD]\n")


class FakeHub:
    """``hf_hub_download`` / ``snapshot_download`` that write into the fake cache (or the
    ``local_dir``) the files ``repos`` hold, and record what was asked."""

    def __init__(self, cache: Path, repos: dict[str, list[str]]) -> None:
        self.cache, self.repos, self.calls = cache, repos, []

    def _write(self, repo: str, name: str, local_dir: str | None) -> str:
        if local_dir is not None:
            path = Path(local_dir) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            content = json.dumps(BIOMEDCLIP_CONFIG) if name == "open_clip_config.json" else "x"
            path.write_text(content)
            return str(path)
        return str(put(self.cache, repo, name, json.dumps(BIOMEDCLIP_CONFIG) if name == "open_clip_config.json" else "x"))

    def hf_hub_download(self, repo_id, filename, *, local_dir=None, **kw):
        import httpx
        from huggingface_hub.errors import RemoteEntryNotFoundError

        self.calls.append(("file", repo_id, filename, local_dir))
        if filename not in self.repos.get(repo_id, []):
            raise RemoteEntryNotFoundError("404 Entry Not Found", response=httpx.Response(404, request=httpx.Request("HEAD", "https://hf.invalid")))
        return self._write(repo_id, filename, local_dir)

    def snapshot_download(self, repo_id, *, allow_patterns=None, local_dir=None, **kw):
        self.calls.append(("snapshot", repo_id, tuple(allow_patterns or ()), local_dir))
        for name in self.repos.get(repo_id, []):
            if allow_patterns is None or name in allow_patterns:
                self._write(repo_id, name, local_dir)
        return str(local_dir or self.cache)


REPOS = {
    X.BIOMEDCLIP: ["open_clip_config.json", "open_clip_pytorch_model.bin", "README.md"],  # no safetensors, as on the Hub
    X.BIOMEDBERT: ["config.json", "vocab.txt", "tokenizer_config.json", "pytorch_model.bin"],
}


@pytest.fixture
def online(hub, monkeypatch) -> FakeHub:
    """The Hub reachable (mocked): downloads fill the fake cache."""
    import huggingface_hub

    fake = FakeHub(hub, REPOS)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(W, "hub_unreachable", lambda timeout=5.0: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return fake


def test_an_empty_cache_lists_every_file_and_the_one_command(hub):
    s = X.cxr_status()
    assert not s.ready and s.command == "python -m core fetch-weights cxr" and s.source == f"hf-hub:{X.BIOMEDCLIP}"
    assert s.missing == [
        f"{X.BIOMEDCLIP}/open_clip_config.json",
        f"{X.BIOMEDCLIP}/open_clip_model.safetensors or open_clip_pytorch_model.bin",
        f"{X.BIOMEDBERT}/config.json",
        f"{X.BIOMEDBERT}/vocab.txt or tokenizer.json",
    ]
    assert str(hub) in s.message and "`python -m core fetch-weights cxr`" in s.message and "~/.cache/huggingface/hub" in s.message
    assert "\n" not in s.message


def test_the_config_alone_is_not_enough(hub):
    """The issue: the old advice fetched open_clip_config.json only, and the weights were the next error."""
    put(hub, X.BIOMEDCLIP, "open_clip_config.json", json.dumps(BIOMEDCLIP_CONFIG))
    s = X.cxr_status()
    assert not s.ready and f"{X.BIOMEDCLIP}/open_clip_config.json" not in s.missing
    assert f"{X.BIOMEDCLIP}/open_clip_model.safetensors or open_clip_pytorch_model.bin" in s.missing
    assert "open_clip_pytorch_model.bin" in s.message and s.command == "python -m core fetch-weights cxr"


@pytest.mark.parametrize("weights", ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"])
def test_every_file_here_is_ready(hub, weights):
    put_biomedclip(hub, weights)
    s = X.cxr_status()
    assert s.ready and s.missing == [] and s.command == ""
    assert s.message.startswith("The chest X-ray model is ready: BiomedCLIP") and "zero-shot" in s.message
    assert any(p.name == weights for p in s.files)


def test_the_text_files_are_the_ones_the_config_names(hub):
    cfg = json.loads(json.dumps(BIOMEDCLIP_CONFIG))
    cfg["model_cfg"]["text_cfg"].update(hf_model_name="org/text-tower", hf_tokenizer_name="org/tokenizer")
    put(hub, X.BIOMEDCLIP, "open_clip_config.json", json.dumps(cfg))
    put(hub, X.BIOMEDCLIP, "open_clip_pytorch_model.bin")
    assert X.cxr_status().missing == ["org/text-tower/config.json", "org/tokenizer/vocab.txt or tokenizer.json"]


def test_a_broken_config_says_so(hub):
    put(hub, X.BIOMEDCLIP, "open_clip_config.json", "{not json")
    s = X.cxr_status()
    assert not s.ready and "not a valid open_clip config" in s.message and s.missing == [f"{X.BIOMEDCLIP}/open_clip_config.json"]


def test_the_status_loads_nothing_and_never_touches_the_network(hub, monkeypatch):
    import socket

    import huggingface_hub
    import open_clip

    def boom(*a, **k):
        raise AssertionError("no loading, no network")

    for mod, name in ((huggingface_hub, "hf_hub_download"), (huggingface_hub, "snapshot_download"), (open_clip, "create_model_from_pretrained"),
                      (open_clip, "get_tokenizer"), (socket, "create_connection"), (socket, "getaddrinfo")):  # fmt: skip
        monkeypatch.setattr(mod, name, boom)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not X.cxr_status().ready
    put_biomedclip(hub)
    assert X.cxr_status().ready


def test_a_local_folder_needs_its_own_files_and_says_its_command(hub, tmp_path, monkeypatch):
    folder = tmp_path / "my clip"
    monkeypatch.setenv("XFV_CXR_CLIP", str(folder))
    s = X.cxr_status()
    assert not s.ready and s.command == f"python -m core fetch-weights cxr --clip '{folder}'" and s.source == f"local-dir:{folder}"
    assert str(folder / "open_clip_config.json") in s.missing and f"{X.BIOMEDBERT}/config.json" in s.missing
    assert "open_clip folder" in s.message and "copy the folder" in s.message
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(BIOMEDCLIP_CONFIG))
    for name in ("open_clip_pytorch_model.bin", "vocab.txt", "tokenizer_config.json"):
        (folder / name).write_text("x")
    assert X.cxr_status().missing == [f"{X.BIOMEDBERT}/config.json"]  # the text tower's config comes from the cache
    put(hub, X.BIOMEDBERT, "config.json", "{}")
    s = X.cxr_status()
    assert s.ready and str(folder) in s.message


def test_a_missing_head_is_named_but_needs_no_download(hub, tmp_path, monkeypatch):
    put_biomedclip(hub)
    s = X.cxr_status(head=tmp_path / "head.pt")
    assert not s.ready and s.missing == [str(tmp_path / "head.pt")] and s.command == "" and "train-cxr" in s.message
    (tmp_path / "head.pt").write_bytes(b"x")
    monkeypatch.setenv("XFV_CXR_HEAD", str(tmp_path / "head.pt"))
    s = X.cxr_status()
    assert s.ready and "supervised" in s.message
    assert X.cxr_status(head="").ready and "zero-shot" in X.cxr_status(head="").message


def test_fetch_asks_for_every_file_the_model_needs(online, hub):
    paths = X.fetch_cxr()
    files = [c for c in online.calls if c[0] == "file"]
    assert files == [
        ("file", X.BIOMEDCLIP, "open_clip_config.json", None),
        ("file", X.BIOMEDCLIP, "open_clip_model.safetensors", None),  # open_clip's order: the safetensors first
        ("file", X.BIOMEDCLIP, "open_clip_pytorch_model.bin", None),
        ("file", X.BIOMEDBERT, "config.json", None),
    ]
    (snap,) = [c for c in online.calls if c[0] == "snapshot"]
    assert snap[1] == X.BIOMEDBERT and {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= set(snap[2]) and snap[3] is None
    assert "pytorch_model.bin" not in snap[2]  # the text weights come with the CLIP checkpoint
    assert {p.name for p in paths} == {"open_clip_config.json", "open_clip_pytorch_model.bin", "config.json", "vocab.txt"}
    assert X.cxr_status().ready
    online.calls.clear()
    X.fetch_cxr()  # everything is here: nothing is asked again
    assert online.calls == []


def test_fetch_into_a_local_folder(online, hub, tmp_path):
    folder = tmp_path / "biomedclip"
    X.fetch_cxr(folder)
    assert ("file", X.BIOMEDCLIP, "open_clip_pytorch_model.bin", str(folder)) in online.calls
    assert ("file", X.BIOMEDBERT, "config.json", None) in online.calls  # AutoConfig reads it from the cache
    assert (folder / "vocab.txt").is_file() and (folder / "tokenizer_config.json").is_file()
    assert X.cxr_status(folder).ready


def test_fetch_offline_lists_the_files_and_what_to_do(hub, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("no download offline"))
    with pytest.raises(ModelUnavailableError) as e:
        X.fetch_cxr()
    msg = str(e.value)
    assert "HF_HUB_OFFLINE=1" in msg and "\n" not in msg
    for name in ("open_clip_config.json", "open_clip_pytorch_model.bin", f"{X.BIOMEDBERT}: config.json", "vocab.txt"):
        assert name in msg
    assert "`python -m core fetch-weights cxr` on a machine with internet" in msg and "~/.cache/huggingface/hub" in msg


def test_fetch_without_internet_says_so_at_once(hub, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(W, "hub_unreachable", lambda timeout=5.0: "https://huggingface.co: Name or service not known")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("no retries against a Hub that is not there"))
    with pytest.raises(ModelUnavailableError, match=r"cannot be reached \(https://huggingface.co: Name or service not known\)") as e:
        X.fetch_cxr()
    assert "open_clip_pytorch_model.bin" in str(e.value) and "copy its ~/.cache/huggingface/hub" in str(e.value)


def test_a_hub_error_mid_way_names_what_is_still_missing(online, monkeypatch):
    import huggingface_hub

    def flaky(repo_id, filename, **kw):
        if filename == "config.json":
            raise ConnectionError("connection reset\nmore lines")
        return online.hf_hub_download(repo_id, filename, **kw)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", flaky)
    with pytest.raises(ModelUnavailableError, match=r"answered ConnectionError \(connection reset\)") as e:
        X.fetch_cxr()
    assert f"Missing: {X.BIOMEDBERT}: config.json, vocab.txt or tokenizer.json" in str(e.value)


def test_no_hub_reachable_when_the_host_does_not_resolve(monkeypatch):
    import socket

    for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(k, raising=False)

    def no_dns(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_dns)
    assert W.hub_unreachable() == "https://huggingface.co: Name or service not known"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # behind a proxy the download finds out itself
    assert W.hub_unreachable() is None


# -- the whole path on a tiny model of the same kind ------------------------------------------
TINY = "fake/tiny-cxr-clip"
TINY_BERT = "fake/tiny-bert"


def tiny_hub_model(cache: Path) -> None:
    """A tiny open_clip CustomTextCLIP with a Hugging Face BERT text tower, in the fake cache
    the way an ``hf-hub:`` model lies there: open_clip_config.json + open_clip_pytorch_model.bin,
    and the text tower's config.json + vocab.txt in its own repository."""
    import torch
    from open_clip.model import CustomTextCLIP
    from transformers import BertConfig

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "pleural", "effusion", "no", "##s"]
    put(cache, TINY_BERT, "vocab.txt", "\n".join(vocab) + "\n")
    bert = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    put(cache, TINY_BERT, "config.json", bert.to_json_string())
    text = {
        "hf_model_name": TINY_BERT,
        "hf_tokenizer_name": TINY_BERT,
        "hf_proj_type": "linear",
        "hf_pooler_type": "cls_pooler",
        "context_length": 16,
    }
    vision = {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}
    put(
        cache,
        TINY,
        "open_clip_config.json",
        json.dumps({"model_cfg": {"embed_dim": 16, "vision_cfg": vision, "text_cfg": text}, "preprocess_cfg": {}}),
    )
    torch.manual_seed(0)
    model = CustomTextCLIP(16, vision, {**text, "hf_model_pretrained": False})
    buf = put(cache, TINY, "open_clip_pytorch_model.bin")
    torch.save(model.state_dict(), buf)


def test_ready_means_it_loads_offline(hub):
    """The status's list is what open_clip really reads: with exactly these files the model
    and its tokenizer load with the Hub off, and without the vocabulary the status says so."""
    tiny_hub_model(hub)
    assert X.cxr_status(f"hf-hub:{TINY}").ready
    model, tokenizer, spec = X.load_cxr_clip(f"hf-hub:{TINY}")
    assert spec == f"hf-hub:{TINY}" and tokenizer(["pleural effusion"]).shape == (1, 16)
    from core.cxr import diagnose

    r = diagnose(X.cxr_bottleneck(model, tokenizer), np.full((40, 48, 3), 128, np.uint8), top=2)
    assert 0 <= r.probability <= 1 and len(r.concepts) == 2
    vocab = next(hub.rglob("vocab.txt"))
    vocab.unlink()
    s = X.cxr_status(f"hf-hub:{TINY}")
    assert not s.ready and s.missing == [f"{TINY_BERT}/vocab.txt or tokenizer.json"]
    assert s.command == f"python -m core fetch-weights cxr --clip hf-hub:{TINY}"
    with pytest.raises(ModelUnavailableError, match=r"vocab\.txt") as e:
        X.load_cxr_clip(f"hf-hub:{TINY}")
    assert f"fetch-weights cxr --clip hf-hub:{TINY}" in str(e.value)


def test_without_weights_the_loader_says_the_one_command(hub, tmp_path):
    put(hub, X.BIOMEDCLIP, "open_clip_config.json", json.dumps(BIOMEDCLIP_CONFIG))
    with pytest.raises(ModelUnavailableError) as e:
        X.load_cxr_clip()
    assert "open_clip_pytorch_model.bin" in str(e.value) and "python -m core fetch-weights cxr" in str(e.value)
    with pytest.raises(ModelUnavailableError, match=r"open_clip folder .* lacks open_clip_config\.json"):
        X.load_cxr_clip(tmp_path / "nothing")
