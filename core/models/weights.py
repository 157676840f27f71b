"""Where downloadable weights live, and the check that turns "not here" into a clear
``ModelUnavailableError`` at once (never a hang, never a stack trace)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelUnavailableError

log = logging.getLogger(__name__)


def weights_dir() -> Path:
    """``$XFV_WEIGHTS`` or ``~/.cache/xfv/weights``: local copies of downloadable weights."""
    return Path(os.environ.get("XFV_WEIGHTS", Path.home() / ".cache" / "xfv" / "weights"))


def offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _local_then_remote(fetch: Callable[..., str], repo_id: str, filename: str | None, model: str) -> str:
    """``fetch(**kw)`` from the local cache first; then, unless offline, from the Hub."""
    try:
        return fetch(local_files_only=True)
    except Exception:
        if offline():
            raise ModelUnavailableError(_hub_message(repo_id, filename, model)) from None
    try:
        return fetch(etag_timeout=10)
    except Exception as e:
        raise ModelUnavailableError(_hub_message(repo_id, filename, model) + f" (download failed: {type(e).__name__})") from None


def hf_file(repo_id: str, filename: str, model: str) -> str:
    """A file of a Hub repository: from the local cache, else downloaded unless offline.

    Raises ``ModelUnavailableError`` saying what to fetch and where when it cannot be had.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a requirement
        raise ModelUnavailableError(f"{model} needs huggingface_hub: pip install huggingface-hub") from e
    return _local_then_remote(lambda **kw: hf_hub_download(repo_id, filename, **kw), repo_id, filename, model)


def _hub_message(repo_id: str, filename: str | None, model: str) -> str:
    what = f"'{filename}' of the Hugging Face repository '{repo_id}'" if filename else f"the Hugging Face repository '{repo_id}'"
    cmd = f"huggingface-cli download {repo_id}" + (f" {filename}" if filename else "")
    return (
        f"model '{model}' needs {what}, which is not in the local Hugging Face cache "
        f"and cannot be downloaded here. On a machine with internet run `{cmd}` "
        "(it goes to ~/.cache/huggingface/hub; copy that folder here, or set HF_HOME), "
        "then try again; the offline default model 'sface' needs no download"
    )


def require_file(path: Path, url: str, model: str) -> Path:
    """``path`` if it exists, else a ``ModelUnavailableError`` naming the URL and the path."""
    if path.is_file():
        return path
    raise ModelUnavailableError(
        f"model '{model}' needs the weights file {path.name}, which is not at {path}. "
        f"Download it from {url} and put it there (mkdir -p {path.parent}); "
        "the offline default model 'sface' needs no download"
    )


# -- files of Hub repositories: where they are, and fetching all a model needs at once ---------
@dataclass(frozen=True)
class HubFile:
    """One file a model needs from a Hugging Face repository: any one of ``names`` will do
    (a download takes the first the repository has), ``also`` are small optional companions
    fetched with it where the repository has them, and ``local_dir`` is the folder it goes to
    (None: the standard Hugging Face cache)."""

    repo: str
    names: tuple[str, ...]
    what: str = ""
    also: tuple[str, ...] = ()
    local_dir: str | None = None

    def label(self) -> str:
        return " or ".join(self.names)


def hub_cache() -> Path:
    """The Hugging Face cache folder in use (``HF_HUB_CACHE``, ``HF_HOME``/hub, or ~/.cache/huggingface/hub)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a requirement
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    return Path(constants.HF_HUB_CACHE)


def find_hub_file(f: HubFile, revision: str | None = None) -> Path | None:
    """Where ``f`` is on this machine (its folder, or the Hub cache at ``revision``, default
    the 'main' ref), or None. Looks at the disk only: no network, nothing loaded."""
    if f.local_dir is not None:
        return next((Path(f.local_dir) / n for n in f.names if (Path(f.local_dir) / n).is_file()), None)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a requirement
        return None
    for n in f.names:
        found = try_to_load_from_cache(f.repo, n, revision=revision)
        if isinstance(found, str):
            return Path(found)
    return None


def missing_hub_files(files: list[HubFile]) -> list[HubFile]:
    return [f for f in files if find_hub_file(f) is None]


def describe_hub_files(files: list[HubFile]) -> str:
    """``repo: a, b or c; repo2: d`` (files bound for a folder: ``a, b (from repo)``), for messages."""
    groups: dict[tuple[str, bool], list[str]] = {}
    for f in files:
        groups.setdefault((f.repo, f.local_dir is not None), []).append(f.label())
    parts = [f"{', '.join(names)} (from {repo})" if in_folder else f"{repo}: {', '.join(names)}" for (repo, in_folder), names in groups.items()]
    return "; ".join(parts)


def copy_advice(command: str) -> str:
    """What to do where there is no internet: ``command`` elsewhere, then copy the cache here."""
    return (
        f"run `{command}` on a machine with internet, then copy its ~/.cache/huggingface/hub folder to {hub_cache()} here "
        "(or point HF_HOME at the copy's parent folder)"
    )


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (its host does not resolve or answer), or
    None. Behind an HTTP(S) proxy the download itself is left to find out (None)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")):
        return None
    import socket
    from urllib.parse import urlsplit

    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except ImportError:  # pragma: no cover - a requirement
        endpoint = "https://huggingface.co"
    url = urlsplit(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{endpoint}: {e.strerror or type(e).__name__}"
    return None


def download_hub_files(files: list[HubFile], model: str, command: str) -> list[Path]:
    """Every file of ``files`` not on this machine yet, downloaded (``hf_hub_download``, or
    ``snapshot_download(allow_patterns=...)`` for a file with companions) into the Hugging Face
    cache or its ``local_dir``; the paths of all of them. Offline (``HF_HUB_OFFLINE=1``) or
    when the Hub cannot be reached: one ``ModelUnavailableError`` naming what is missing and
    ``command``, to run where there is internet."""
    todo = missing_hub_files(files)
    if todo and offline():
        raise ModelUnavailableError(
            f"cannot download {model} here: the Hugging Face Hub is off (HF_HUB_OFFLINE=1). Missing: {describe_hub_files(todo)}. "
            f"Unset HF_HUB_OFFLINE if this machine has internet, or {copy_advice(command)}"
        )
    why = hub_unreachable() if todo else None
    if why:
        raise ModelUnavailableError(
            f"cannot download {model} here: the Hugging Face Hub cannot be reached ({why}). Missing: {describe_hub_files(todo)}. "
            f"{copy_advice(command)[0].upper()}{copy_advice(command)[1:]}"
        )
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import RemoteEntryNotFoundError
    except ImportError as e:  # pragma: no cover - a requirement
        raise ModelUnavailableError(f"{model} needs huggingface_hub: pip install huggingface-hub") from e
    for i, f in enumerate(todo):
        if find_hub_file(f) is not None:  # an earlier download brought it along
            continue
        try:
            if f.also:
                snapshot_download(f.repo, allow_patterns=[*f.names, *f.also], local_dir=f.local_dir, etag_timeout=10)
            else:
                for n in f.names:
                    try:
                        log.info("downloading %s/%s", f.repo, n)
                        hf_hub_download(f.repo, n, local_dir=f.local_dir, etag_timeout=10)
                        break
                    except RemoteEntryNotFoundError:
                        continue  # the repository has another of the names
        except Exception as e:  # no connection, gated, not found: the same advice
            raise ModelUnavailableError(
                f"cannot download {model} here: the Hugging Face Hub answered {type(e).__name__} ({_first_line(e)}). "
                f"Missing: {describe_hub_files(todo[i:])}. If this machine has no internet, {copy_advice(command)}"
            ) from None
        if find_hub_file(f) is None:
            raise ModelUnavailableError(
                f"{f.repo} has none of {f.label()} ({f.what or 'needed'}); {model} cannot be fetched from it. Check the repository name"
            )
    return [p for f in files if (p := find_hub_file(f)) is not None]


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else "no message")[:200]


#: The face models whose weights are open_clip checkpoints on the Hub: (architecture, tag),
#: as ``core.registry`` loads them.
OPEN_CLIP_FACE_MODELS = {"clip_vit_l14": ("ViT-L-14", "laion2b_s32b_b82k"), "cbm_clip_vit_l14": ("ViT-L-14", "laion2b_s32b_b82k")}


def open_clip_hub_files(arch: str, pretrained: str) -> list[HubFile]:
    """The checkpoint of open_clip's pretrained tag ``pretrained`` for ``arch`` (its tokenizer
    ships with open_clip), by the names ``core.models.clip.load_open_clip`` reads."""
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - a requirement
        raise ModelUnavailableError("CLIP models need open_clip: pip install open-clip-torch") from e
    hub = (open_clip.get_pretrained_cfg(arch, pretrained) or {}).get("hf_hub", "").rstrip("/")
    if not hub:
        raise ModelUnavailableError(f"open_clip has no Hugging Face weights '{pretrained}' for {arch}")
    return [HubFile(hub, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"), f"{arch} {pretrained} weights")]
