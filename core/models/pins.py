"""Pins for models that run code from their Hub repository (``trust_remote_code``).

Running a repository's Python is running whatever its owner last pushed. ``core`` never
does that unpinned: such a model loads only from a revision the operator reviewed and
pinned, and only while the repository's code files still hash as recorded. The pins live
in one JSON file (``$XFV_PINS`` or ``~/.cache/xfv/remote_code_pins.json``)::

    {"adaface_ir101": {"repo": "minchul/cvlface_adaface_ir101_webface12m",
                       "revision": "<40-hex commit>",
                       "code_sha256": {"wrapper.py": "<sha256>", ...}}}

``pin_remote_code(model, repo)`` writes a pin from the snapshot in the local Hugging Face
cache, after the operator has read its code (``python -m core pin-remote-code MODEL``);
``pinned_snapshot(model, repo)`` is what a loader calls: the snapshot folder of the
pinned revision with its code checked, or a ``ModelUnavailableError`` saying what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ModelUnavailableError

log = logging.getLogger(__name__)

#: Files that are code a loader may run (what ``code_sha256`` covers).
CODE_SUFFIXES = (".py",)
_REVISION = re.compile(r"^[0-9a-f]{40}$")


def pins_path() -> Path:
    """``$XFV_PINS`` or ``~/.cache/xfv/remote_code_pins.json``."""
    return Path(os.environ.get("XFV_PINS", Path.home() / ".cache" / "xfv" / "remote_code_pins.json"))


def read_pins() -> dict[str, dict[str, Any]]:
    path = pins_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"{path}: the remote-code pins file cannot be read ({e}); fix or delete it") from None
    return data if isinstance(data, dict) else {}


def code_hashes(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every code file under ``folder``, by relative path."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in CODE_SUFFIXES}  # fmt: skip


def _snapshot(repo: str, revision: str | None, model: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - a requirement
        raise ModelUnavailableError(f"{model} needs huggingface_hub: pip install huggingface-hub") from e
    try:  # the local cache only: pinning and loading never contact the Hub
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except Exception:
        what = f"revision {revision} of " if revision else ""
        raise ModelUnavailableError(
            f"model '{model}' needs {what}the Hugging Face repository '{repo}', which is not in the local cache. On a machine with "
            f"internet run `huggingface-cli download {repo}" + (f" --revision {revision}" if revision else "") + "` and copy "
            "~/.cache/huggingface/hub here (or set HF_HOME); the offline default model 'sface' needs no download"
        ) from None


def pin_remote_code(model: str, repo: str, revision: str | None = None) -> dict[str, Any]:
    """Record the revision and code hashes of ``repo``'s snapshot in the local cache (the
    newest one, or ``revision``) as ``model``'s pin; give the pin. Read the code first."""
    folder = _snapshot(repo, revision, model)
    rev = folder.name
    if not _REVISION.match(rev):
        raise ModelUnavailableError(f"{folder}: not a snapshot folder of the Hugging Face cache (its name is not a commit)")
    pin = {"repo": repo, "revision": rev, "code_sha256": code_hashes(folder)}
    pins = read_pins()
    pins[model] = pin
    path = pins_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pins, indent=1, sort_keys=True), encoding="utf-8")
    log.info("pinned %s to %s@%s (%d code files) in %s", model, repo, rev, len(pin["code_sha256"]), path)
    return pin


def pinned_snapshot(model: str, repo: str) -> Path:
    """The snapshot folder of ``model``'s pinned revision, its code files exactly those
    recorded; ``ModelUnavailableError`` (what to do) when there is no pin, the pinned
    revision is not cached, or a code file was added, removed or changed."""
    pin = read_pins().get(model)
    if not pin:
        raise ModelUnavailableError(
            f"model '{model}' runs Python code from the Hugging Face repository '{repo}', so it is left out until you pin a "
            f"revision you have reviewed: download it (`huggingface-cli download {repo}`), read its .py files, then run "
            f"`python -m core pin-remote-code {model}` (it records the revision and the files' SHA-256 in {pins_path()}); "
            "the offline default model 'sface' needs no download"
        )
    if pin.get("repo") != repo or not _REVISION.match(str(pin.get("revision", ""))):
        raise ModelUnavailableError(f"{pins_path()}: the pin of '{model}' is not for {repo} at a 40-hex commit; pin it again")
    folder = _snapshot(repo, pin["revision"], model)
    found, want = code_hashes(folder), dict(pin.get("code_sha256") or {})
    if found != want:
        changed = sorted(k for k in set(found) | set(want) if found.get(k) != want.get(k))
        raise ModelUnavailableError(
            f"model '{model}': the code of {repo}@{pin['revision'][:12]} does not match its pin ({', '.join(changed)} differ); "
            "it was not run. Review the files and pin again if they are right"
        )
    return folder
