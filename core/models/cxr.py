"""A chest X-ray CLIP as a concept bottleneck for pleural effusion, after Yalavarthi and Ratha:
concept scores ``S = cos(E_i(X), T)`` over radiology descriptors, Group SoftMax, then either
a trained linear head ``logits = S_sm W + b`` (supervised mode) or, without one, CLIP's
zero-shot choice between "no pleural effusion" and "pleural effusion" (zero-shot mode).

The default CLIP is BiomedCLIP through open_clip
(``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``, ``XFV_CXR_CLIP`` or
``--clip`` for another ``hf-hub:`` repository or a local open_clip folder). It needs, as
open_clip 3 loads an ``hf-hub:`` model: the repository's ``open_clip_config.json`` and weights
(``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``), and for the Hugging Face
text tower the config named ``text_cfg.hf_model_name`` (``config.json``; the weights come from
the CLIP checkpoint) and the tokenizer named ``text_cfg.hf_tokenizer_name`` (``vocab.txt``
and its companions), both BiomedBERT (``microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract``)
for BiomedCLIP. A local folder holds the config, the weights and the tokenizer files itself.
``cxr_status`` says, from the disk alone, whether they are all here and, if not, the one
command that fetches them (``python -m core fetch-weights cxr``, that is ``fetch_cxr``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, ModelUnavailableError
from ..text.descriptors import ASSETS, DescriptorSet, load_descriptors
from .cbm import DescriptorScorer, ResidualAdapter, read_head, text_features
from .weights import HubFile, describe_hub_files, download_hub_files, find_hub_file, hub_cache, missing_hub_files, offline

if TYPE_CHECKING:
    from .clip import OpenClipModel

BIOMEDCLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDBERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
RADIOLOGY = ASSETS / "radiology_cxr.json"
CLASSES = ("no pleural effusion", "pleural effusion")


#: The weights file names open_clip's ``download_pretrained_from_hf`` tries, in its order.
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: The names ``local-dir:`` folders are searched for first (open_clip's preferred order).
FOLDER_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
#: A Hugging Face tokenizer: the vocabulary (either file), and what ``AutoTokenizer`` reads with it.
TOKENIZER_VOCAB = ("vocab.txt", "tokenizer.json")
TOKENIZER_ALSO = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "config.json")
FETCH_CXR = "python -m core fetch-weights cxr"


def resolve_clip(clip: str | Path | None = None) -> str | None:
    """The CLIP source in use: ``clip``, else ``XFV_CXR_CLIP``, else None (BiomedCLIP)."""
    return str(clip) if clip else (os.environ.get("XFV_CXR_CLIP") or None)


def _folder(source: str | None) -> Path | None:
    return None if source is None or source.startswith("hf-hub:") else Path(source)


def fetch_command(clip: str | Path | None = None) -> str:
    """The one command that fetches every file of this CLIP source."""
    source = resolve_clip(clip)
    return FETCH_CXR + (f" --clip {shlex.quote(source)}" if source else "")


def _read_config(path: Path | None) -> dict[str, Any] | None:
    """The open_clip config at ``path`` (None: not here); ``DataError`` when it cannot be read."""
    if path is None or not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not a valid open_clip config ({type(e).__name__}); delete it and run `{FETCH_CXR}` again") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_cfg"), dict):
        raise DataError(f"{path} is not a valid open_clip config (no model_cfg); delete it and run `{FETCH_CXR}` again")
    return cfg


def _config_file(source: str | None) -> HubFile:
    folder = _folder(source)
    repo = BIOMEDCLIP if folder is not None else str(source or BIOMEDCLIP).removeprefix("hf-hub:")
    return HubFile(repo, ("open_clip_config.json",), "open_clip config", local_dir=None if folder is None else str(folder))


def cxr_files(clip: str | Path | None = None) -> list[HubFile]:
    """Every file the CLIP source needs (see the module docstring), read from its config
    where that is already here, else BiomedCLIP's. Looks at the disk only."""
    source = resolve_clip(clip)
    folder = _folder(source)
    repo = BIOMEDCLIP if folder is not None else str(source or BIOMEDCLIP).removeprefix("hf-hub:")
    where = None if folder is None else str(folder)
    config = _config_file(source)
    files = [config, HubFile(repo, FOLDER_WEIGHTS if folder is not None else HUB_WEIGHTS, "CLIP weights", local_dir=where)]
    cfg = _read_config(find_hub_file(config))
    if cfg is not None:
        text = cfg["model_cfg"].get("text_cfg") or {}
    else:  # not here yet: BiomedCLIP's text tower (another repository's are known once its config is)
        text = {"hf_model_name": BIOMEDBERT, "hf_tokenizer_name": BIOMEDBERT} if repo == BIOMEDCLIP else {}
    if text.get("hf_model_name"):  # the text tower's config, from the cache (or a folder it names)
        name = str(text["hf_model_name"])
        local = name if Path(name).is_dir() else None
        files.append(HubFile(name, ("config.json",), "text tower config", local_dir=local))
    if text.get("hf_tokenizer_name"):  # open_clip reads the tokenizer from a local folder itself
        name = str(text["hf_tokenizer_name"])
        files.append(HubFile(name, TOKENIZER_VOCAB, "text tokenizer", also=TOKENIZER_ALSO, local_dir=where))
        if folder is not None:  # AutoTokenizer(folder) learns the tokenizer's class from one of these
            files.append(HubFile(name, ("tokenizer_config.json", "config.json"), "tokenizer class", local_dir=where))
    return files


def fetch_cxr(clip: str | Path | None = None) -> list[Path]:
    """Download every file the chest X-ray CLIP needs (``python -m core fetch-weights cxr``)
    into the Hugging Face cache (a local folder source: into that folder, but the text
    tower's config into the cache); the paths. Offline: ``ModelUnavailableError`` listing them."""
    source, command = resolve_clip(clip), fetch_command(clip)
    label = f"the chest X-ray model ({_name(source)})"
    download_hub_files(cxr_files(source), label, command)
    return download_hub_files(cxr_files(source), label, command)  # its config may name other text files


def _name(source: str | None) -> str:
    return "BiomedCLIP" if source is None or source.removeprefix("hf-hub:") == BIOMEDCLIP else source


@dataclass
class CXRStatus:
    """Whether the chest X-ray model can be built here, from the disk alone."""

    ready: bool
    missing: list[str]  # "repo/file" (either name will do where "or"), or paths in a folder
    message: str  # one paragraph: what is missing, where it would go, the command
    command: str  # the one command that fetches every missing file ("" when none would help)
    source: str = ""  # hf-hub:ORG/REPO or the local folder
    files: list[Path] = field(default_factory=list)  # the files found


def _label(f: HubFile) -> str:
    return str(Path(f.local_dir) / f.label()) if f.local_dir else f"{f.repo}/{f.label()}"


def cxr_status(clip: str | Path | None = None, head: str | Path | None = None) -> CXRStatus:
    """Can the chest X-ray model run here? ``clip`` (default ``XFV_CXR_CLIP``, else BiomedCLIP
    in the Hugging Face cache) and ``head`` (default ``XFV_CXR_HEAD``; "" for none) are looked
    up on the disk only: no model is loaded, the network is never contacted."""
    source = resolve_clip(clip)
    if head is None:
        head = os.environ.get("XFV_CXR_HEAD") or None
    head = str(head) if head else None
    folder = _folder(source)
    spec = f"local-dir:{folder}" if folder is not None else f"hf-hub:{str(source or BIOMEDCLIP).removeprefix('hf-hub:')}"
    packages = [p for p in ("open_clip", "transformers") if importlib.util.find_spec(p) is None]
    if packages:  # pragma: no cover - requirements
        cmd = "pip install open-clip-torch transformers"
        return CXRStatus(False, packages, f"The chest X-ray model needs {' and '.join(packages)}: run `{cmd}`, then reload.", cmd, spec)
    try:
        files = cxr_files(source)
    except DataError as e:  # a broken config
        return CXRStatus(False, [_label(_config_file(source))], f"The chest X-ray model cannot be built: {e}.", fetch_command(source), spec)
    missing = missing_hub_files(files)
    found = [p for f in files if (p := find_hub_file(f)) is not None]
    head_missing = head is not None and not Path(head).is_file()
    parts = []
    if missing:
        parts.append(_missing_text(source, missing))
    if head_missing:
        parts.append(f"The trained head {head} (--head / XFV_CXR_HEAD) is not a file: train one with `python -m core train-cxr`, "
                     "or leave it out for zero-shot mode.")  # fmt: skip
    if not parts:
        where = f"the folder {folder}" if folder is not None else f"the Hugging Face cache at {hub_cache()}"
        mode = f"supervised, with the trained head {head}" if head else "zero-shot: no trained head"
        parts.append(f"The chest X-ray model is ready: {_name(source)} from {where} ({mode}).")
    return CXRStatus(not missing and not head_missing, [_label(f) for f in missing] + ([str(head)] if head_missing else []),
                     " ".join(parts), fetch_command(source) if missing else "", spec, found)  # fmt: skip


def _missing_text(source: str | None, missing: list[HubFile]) -> str:
    command = fetch_command(source)
    in_folder = [f for f in missing if f.local_dir is not None]
    in_cache = [f for f in missing if f.local_dir is None]
    lacks = []
    if in_folder:
        lacks.append(f"the open_clip folder {_folder(source) or in_folder[0].local_dir} lacks {describe_hub_files(in_folder)}")
    if in_cache:
        lacks.append(f"the Hugging Face cache at {hub_cache()} lacks {describe_hub_files(in_cache)}")
    copy = f"the folder {_folder(source)} and its" if in_folder else "its"
    return (f"The chest X-ray model ({_name(source)}) cannot run: {' and '.join(lacks)}. Run `{command}`, which fetches all of them: "
            f"here if this machine has internet; otherwise on a machine with internet, then copy {copy} ~/.cache/huggingface/hub "
            f"folder here (to {hub_cache()}, or point HF_HOME at the copy's parent folder).")  # fmt: skip


def load_cxr_clip(source: str | Path | None = None, name: str = "biomedclip") -> tuple[OpenClipModel, Any, str]:
    """An open_clip CLIP for chest X-rays, its tokenizer and where it came from: ``source`` is
    a local directory, ``hf-hub:ORG/REPO`` (from the local Hugging Face cache) or None
    (``XFV_CXR_CLIP``, else BiomedCLIP). Missing files are downloaded first unless offline or
    from a folder; else ``ModelUnavailableError`` names them and the command that fetches them."""
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - a requirement
        raise ModelUnavailableError(f"{name} needs open_clip: pip install open-clip-torch") from e
    src = resolve_clip(source)
    folder = _folder(src)
    try:
        missing = missing_hub_files(cxr_files(src))
    except DataError as e:
        raise ModelUnavailableError(str(e)) from None
    if missing and (folder is not None or offline()):
        raise ModelUnavailableError(_missing_text(src, missing))
    if missing:
        fetch_cxr(src)
    spec = f"local-dir:{folder}" if folder is not None else f"hf-hub:{str(src or BIOMEDCLIP).removeprefix('hf-hub:')}"
    try:
        model, _ = open_clip.create_model_from_pretrained(spec)
        tokenizer = open_clip.get_tokenizer(spec)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelUnavailableError(f"{name} ({spec}) could not be built offline: {e}. `{fetch_command(src)}` fetches every "
                                    "file it needs") from None  # fmt: skip
    return model.eval(), tokenizer, spec


@dataclass
class CXROutput:
    scores: torch.Tensor  # (B, N) cosine with each descriptor
    probs: torch.Tensor  # (B, N) Group SoftMax
    logits: torch.Tensor  # (B, 2): no effusion, effusion


class CXRBottleneck(DescriptorScorer):
    """Image tower -> descriptor scores -> Group SoftMax -> effusion logits."""

    class_text: torch.Tensor  # buffer: (2, d) normalised text encodings of the two classes

    def __init__(
        self, visual: nn.Module, text: torch.Tensor, descriptors: DescriptorSet, class_text: torch.Tensor, logit_scale: float = 100.0
    ) -> None:
        super().__init__(visual, text, descriptors, logit_scale)  # the adapter comes with a trained head
        self.register_buffer("class_text", F.normalize(class_text.detach().float(), dim=1))
        self.head: nn.Linear | None = None  # the supervised bottleneck's W, b

    @property
    def supervised(self) -> bool:
        return self.head is not None

    def add_head(self, alpha: float = 0.8) -> nn.Linear:
        """A fresh supervised head (W: concepts -> 2 classes) and residual adapter (mixing
        weight ``alpha``), replacing zero-shot mode."""
        self.head = nn.Linear(len(self.descriptors), len(CLASSES)).to(self.text.device)
        self.adapter = ResidualAdapter(self.text.shape[1]).to(self.text.device)
        self.alpha = float(alpha)
        return self.head

    def forward(self, x: torch.Tensor) -> CXROutput:
        image = self.encode(x)
        scores, probs = self.score(image)
        logits = self.head(probs) if self.head is not None else self.logit_scale * image @ self.class_text.t()
        return CXROutput(scores, probs, logits)


def cxr_bottleneck(model: OpenClipModel, tokenizer: Any, descriptors: DescriptorSet | None = None, cache_key: str | None = None) -> CXRBottleneck:
    """The bottleneck over an open_clip CLIP (pretrained, or a tiny random one in tests)."""
    descriptors = descriptors or load_descriptors(RADIOLOGY)
    text = text_features(model, tokenizer, descriptors, cache_key)
    group = {"group": "effusion", "alternatives": list(CLASSES)}
    classes = DescriptorSet.from_dict(
        {"name": "classes", "template": descriptors.template, "components": [{"component": "diagnosis", "groups": [group]}]}
    )
    class_text = text_features(model, tokenizer, classes, cache_key)
    scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
    out = CXRBottleneck(model.visual, text, descriptors, class_text, scale).eval()
    for p in out.parameters():  # frozen; train_cxr_head unfreezes what it trains
        p.requires_grad_(False)
    return out


def save_cxr_head(model: CXRBottleneck, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    if model.head is None or model.adapter is None:
        raise DataError("this bottleneck has no trained head (zero-shot mode)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"descriptors": model.descriptors.digest(), "n_concepts": len(model.descriptors),
             "state": {k: v.cpu() for k, v in model.head.state_dict().items()},
             "adapter": {k: v.cpu() for k, v in model.adapter.state_dict().items()}, "alpha": model.alpha, "extra": extra or {}}  # fmt: skip
    torch.save(state, path)
    return path


def load_cxr_head(model: CXRBottleneck, path: str | Path) -> CXRBottleneck:
    state = read_head(path, model.descriptors, "chest X-ray head")
    model.add_head(float(state["alpha"])).load_state_dict(state["state"])
    assert model.adapter is not None  # add_head made one
    model.adapter.load_state_dict(state["adapter"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model
