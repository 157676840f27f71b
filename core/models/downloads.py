"""The registry of download-only weights: for each model whose weights no package ships, exactly
the files its loader reads, where from (a URL), where to (the cache the loader looks in) and
the SHA-256 recorded for each, for ``python -m core fetch-weights NAME|all``.

``plan(names)`` only looks at the disk: it is what the command prints before it fetches and
what it prints, with exit status 2, where there is no internet (``HF_HUB_OFFLINE=1`` or the
Hub unreachable), so the files can be fetched elsewhere and copied to the places it names.
``fetch(plan)`` downloads each missing file (Hugging Face files with ``huggingface_hub`` into
its cache, the FaceNet checkpoint from its GitHub release into torch's hub folder), then checks
its SHA-256 against ``RECORDED`` (``assets/weights/sha256.json``): a mismatch removes the file
and fails. A file with no recorded hash yet is reported with the hash it has, to be recorded
(``--record`` writes it): the first fetch on a machine with internet pins the bytes every
later fetch must match (no hash could be recorded here, where nothing can be downloaded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, ModelUnavailableError
from .weights import HubFile, find_hub_file, hub_cache, hub_unreachable, offline

log = logging.getLogger(__name__)

RECORDED = Path(__file__).resolve().parents[2] / "assets" / "weights" / "sha256.json"
#: The models ``fetch-weights all`` fetches, with what each is.
MODELS = {
    "clip_vit_l14": "CLIP ViT-L-14 (LAION-2B) face verification and ViT-LRP",
    "cbm_clip_vit_l14": "the concept bottleneck's CLIP ViT-L-14 (the same checkpoint)",
    "cxr": "BiomedCLIP for chest X-rays, with its BiomedBERT text files",
    "facenet_vggface2": "FaceNet InceptionResnetV1 trained on VGGFace2",
    "adaface_ir101": "AdaFace IR-101 (WebFace12M), its repository at the pinned revision",
    "bert_qa": "the chat's extractive answerer, BERT base cased on SQuAD 2.0",
}
ALIASES = {"cbm": "cbm_clip_vit_l14"}
#: The QA model's files, as ``transformers`` reads them (weights: the first the repository has).
QA_FILES = (("config.json",), ("vocab.txt",), ("tokenizer_config.json",), ("special_tokens_map.json",),
            ("model.safetensors", "pytorch_model.bin"))  # fmt: skip


@dataclass(frozen=True)
class Planned:
    """One file of the plan: the model, its URL, where the loader reads it, its recorded
    SHA-256 (None: not recorded yet) and where it is on this machine (None: missing)."""

    model: str
    url: str
    dest: str
    sha256: str | None
    found: Path | None
    key: str  # what RECORDED calls it: ``repo/file`` for a Hub file, else the URL
    hub: HubFile | None = None  # fetched with huggingface_hub
    revision: str | None = None


def recorded() -> dict[str, str]:
    if not RECORDED.is_file():
        return {}
    try:
        data = json.loads(RECORDED.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{RECORDED} is not readable ({e})") from None
    return {str(k): str(v) for k, v in data.items() if not str(k).startswith("_")}


def names_of(requested: Sequence[str]) -> list[str]:
    """The models of ``requested`` (``all``, names and aliases), each once, checked."""
    out: list[str] = []
    for r in requested:
        for n in list(MODELS) if r == "all" else [ALIASES.get(r, r)]:
            if n not in MODELS:
                raise DataError(f"no downloadable model {r!r}; choose from: all, {', '.join(MODELS)}")
            if n not in out:
                out.append(n)
    return out


def _hub(model: str, f: HubFile, sha: dict[str, str], revision: str | None = None) -> list[Planned]:
    found = find_hub_file(f, revision)
    name = found.name if found is not None else f.names[0]
    url = f"https://huggingface.co/{f.repo}/resolve/{revision or 'main'}/{name}"
    dest = f.local_dir or f"{hub_cache()} (Hugging Face cache, repository {f.repo})"
    key = f"{f.repo}/{name}"
    return [Planned(model, url, dest, sha.get(key), found, key, f, revision)]


def plan(requested: Sequence[str]) -> list[Planned]:
    """Every file the models need, from the registry and the disk (no network)."""
    from .cxr import cxr_files
    from .facenet import WEIGHTS_URL, weights_path
    from .hub import ADAFACE_REPO
    from .pins import read_pins
    from .weights import OPEN_CLIP_FACE_MODELS, open_clip_hub_files

    sha = recorded()
    out: list[Planned] = []
    for m in names_of(requested):
        if m in OPEN_CLIP_FACE_MODELS:
            for f in open_clip_hub_files(*OPEN_CLIP_FACE_MODELS[m]):
                out += _hub(m, f, sha)
        elif m == "cxr":
            for f in cxr_files():
                out += _hub(m, f, sha)
        elif m == "facenet_vggface2":
            p = weights_path()
            out.append(Planned(m, WEIGHTS_URL, str(p), sha.get(WEIGHTS_URL), p if p.is_file() else None, WEIGHTS_URL))
        elif m == "adaface_ir101":
            pin = read_pins().get(m, {})
            rev = pin.get("revision")
            for name in ("config.json", "model.safetensors", *sorted(pin.get("code_sha256", {}))):
                out += _hub(m, HubFile(ADAFACE_REPO, (name,), "AdaFace repository file"), sha, rev)
        else:
            from ..text.qa.extractive import DEFAULT_QA_MODEL

            for names in QA_FILES:
                out += _hub(m, HubFile(DEFAULT_QA_MODEL, names, "BERT QA file"), sha)
    return out


def plan_lines(items: Sequence[Planned]) -> list[str]:
    """The plan as the command prints it: per file its state, URL, destination and hash."""
    lines = []
    for p in items:
        state = f"here ({p.found})" if p.found is not None else "missing"
        unpinned = " (not pinned yet: review the code, then pin-remote-code)" if p.model == "adaface_ir101" else ""
        rev = f" at revision {p.revision}" if p.revision else unpinned
        sha = p.sha256 or "not recorded yet (recorded by the first fetch with --record)"
        other = f" (or {', '.join(p.hub.names[1:])}, whichever the repository has)" if p.hub is not None and len(p.hub.names) > 1 else ""
        lines.append(f"{p.model:<17} {state}\n    from {p.url}{rev}{other}\n    to   {p.dest}\n    sha256 {sha}")
    return lines


def unavailable_reason() -> str | None:
    """Why nothing can be downloaded here (offline, or the Hub unreachable), or None."""
    if offline():
        return "the Hugging Face Hub is off (HF_HUB_OFFLINE=1)"
    why = hub_unreachable()
    return None if why is None else f"the Hugging Face Hub cannot be reached ({why})"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(items: Sequence[Planned], record: bool = False) -> list[tuple[Planned, Path, str]]:
    """Download every missing file of ``items`` and check each file's SHA-256 against the
    recorded one (``record``: write the hashes not recorded yet); ``(item, path, sha256)``."""
    why = unavailable_reason()
    if why is not None and any(p.found is None for p in items):
        raise ModelUnavailableError(f"cannot download here: {why}")
    out = []
    for p in items:
        path = p.found if p.found is not None else _download(p)
        digest = sha256_of(path)
        if p.sha256 is not None and digest != p.sha256:
            if p.found is None:
                path.unlink(missing_ok=True)
            raise ModelUnavailableError(f"{p.url}: SHA-256 {digest} is not the recorded {p.sha256}; the file was not kept")
        out.append((p, path, digest))
    if record:
        sha = recorded()
        sha.update({p.key: d for p, _, d in out if p.sha256 is None})
        RECORDED.parent.mkdir(parents=True, exist_ok=True)
        RECORDED.write_text(json.dumps(dict(sorted(sha.items())), indent=1) + "\n", encoding="utf-8")
    return out


def _download(p: Planned) -> Path:
    if p.hub is not None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        for name in p.hub.names:  # the first the repository has (e.g. safetensors, else the .bin)
            try:
                log.info("downloading %s/%s", p.hub.repo, name)
                return Path(hf_hub_download(p.hub.repo, name, revision=p.revision, local_dir=p.hub.local_dir, etag_timeout=10))
            except RemoteEntryNotFoundError:
                continue
        raise ModelUnavailableError(f"{p.hub.repo} has none of {p.hub.label()}; check the repository")
    dest = Path(p.dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    log.info("downloading %s", p.url)
    with urllib.request.urlopen(p.url, timeout=30) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f)
    tmp.replace(dest)
    return dest
