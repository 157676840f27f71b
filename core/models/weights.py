"""Where downloadable weights live, and the check that turns "not here" into a clear
``ModelUnavailableError`` at once (never a hang, never a stack trace)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelUnavailableError


def weights_dir() -> Path:
    """``$XFV_WEIGHTS`` or ``~/.cache/xfv/weights``: local copies of downloadable weights."""
    return Path(os.environ.get("XFV_WEIGHTS", Path.home() / ".cache" / "xfv" / "weights"))


def offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _local_then_remote(fetch, repo_id: str, filename: str | None, model: str) -> str:
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
