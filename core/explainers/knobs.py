"""Typed knobs: an explainer's settings as dataclass fields that carry their own range and
help, so that validation, ``python -m core methods --json`` and the docs read one place.

``knob(default, help, low=..., high=..., choices=...)`` is a ``dataclasses.field`` with that
metadata; ``check_knobs(params)`` checks every such field of a dataclass instance and raises
``InvalidParameterError`` naming the knob, the value given and what is allowed;
``describe_knobs(cls)`` lists the fields as plain data (name, type, default, range, help).
A method's presets are named instances of its dataclass (``{"full": Params(), "fast":
Params(..., preset="fast")}``); ``from_preset(presets, knobs)`` starts from the chosen one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..errors import InvalidParameterError

T = TypeVar("T")

#: The presets every method with presets offers: the papers' settings, and a cheaper start for a CPU.
PRESET_NAMES = ("full", "fast")

#: What every method that hides pixels calls its hiding value (X-Maps, removal, RISE, the ViT heatmaps).
FILL_HELP = "the hiding value: black, grey, white, noise, mean, a grey level or an RGB triple"

#: Knob names of earlier versions, read as today's: the hiding value had three names (X-Maps'
#: ``patch_fill``, removal's ``hide``, ``fill``); removal's ``agg_start="hide"`` is ``"fill"``.
RENAMED = {"patch_fill": "fill", "hide": "fill"}


def knob(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field with its help and what it allows: numbers in ``low..high`` (each
    element of a tuple), or one of ``choices``. Mutable defaults are not allowed (use tuples)."""
    meta = {"help": help, "low": low, "high": high, "choices": tuple(choices) if choices is not None else None}
    return dataclasses.field(default=default, metadata={"knob": meta})


def fill_knob(default: Any = "black") -> Any:
    """The hiding-value knob, one name and one help for every method that hides pixels."""
    return knob(default, FILL_HELP)


def canonical_knobs(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """``knobs`` with the names of earlier versions (``RENAMED``) read as today's, for calls
    and stored batch settings written before the rename; today's name wins when both are given."""
    out = {k: v for k, v in knobs.items() if k not in RENAMED}
    for old, new in RENAMED.items():
        if knobs.get(old) is not None and out.get(new) is None:
            out[new] = knobs[old]
    if out.get("agg_start") == "hide":
        out["agg_start"] = "fill"
    return out


def _allowed(meta: dict[str, Any]) -> str:
    if meta["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    low, high = meta["low"], meta["high"]
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f"at least {low:g}"
    return f"at most {high:g}"


def _fits(value: Any, meta: dict[str, Any]) -> bool:
    if meta["choices"] is not None:
        return value in meta["choices"]
    values = value if isinstance(value, tuple) else (value,)
    if not values:
        return False
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if (meta["low"] is not None and v < meta["low"]) or (meta["high"] is not None and v > meta["high"]):
            return False
    return True


def check_knobs(params: Any) -> None:
    """Every ``knob`` field of the dataclass instance ``params`` within what it allows, else
    ``InvalidParameterError`` saying which knob, the value and what is allowed."""
    for f in dataclasses.fields(params):
        meta = f.metadata.get("knob")
        if meta is None or (meta["choices"] is None and meta["low"] is None and meta["high"] is None):
            continue
        value = getattr(params, f.name)
        if not _fits(value, meta):
            each = "each value of " if isinstance(value, tuple) and meta["choices"] is None else ""
            raise InvalidParameterError(f"{f.name}={value!r} is not allowed: {each}{f.name} must be {_allowed(meta)}")


def describe_knobs(cls: type) -> list[dict[str, Any]]:
    """The ``knob`` fields of the dataclass ``cls`` as plain data: ``name``, ``type`` (the
    annotation as written), ``default``, ``low``, ``high``, ``choices`` and ``help``."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("knob")
        if meta is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append({"name": f.name, "type": str(f.type), "default": list(default) if isinstance(default, tuple) else default,
                    "low": meta["low"], "high": meta["high"],
                    "choices": list(meta["choices"]) if meta["choices"] is not None else None, "help": meta["help"]})  # fmt: skip
    return out


def params_from(cls: type[T], knobs: dict[str, Any]) -> T:
    """An instance of the knob dataclass ``cls`` from the call's ``knobs`` (those it does not
    name are ignored, None means the default), checked with ``check_knobs``."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    knobs = canonical_knobs(knobs)
    params = cls(**{k: v for k, v in knobs.items() if k in names and v is not None})
    check_knobs(params)
    return params


def from_preset(presets: Mapping[str, T], knobs: dict[str, Any]) -> T:
    """The preset named ``knobs["preset"]`` (default ``full``), an instance of a knob
    dataclass, with the call's ``knobs`` that it names (not None) put in its place. Not yet
    checked: the caller normalises types, then calls ``check_knobs``."""
    preset = knobs.get("preset") or "full"
    if preset not in presets:
        raise InvalidParameterError(f"preset={preset!r} is not allowed: preset must be one of {', '.join(map(repr, presets))}")
    base = presets[preset]
    knobs = canonical_knobs(knobs)
    names = {f.name for f in dataclasses.fields(base)} - {"preset"}  # type: ignore[arg-type]
    return dataclasses.replace(base, **{k: knobs[k] for k in names if knobs.get(k) is not None})  # type: ignore[type-var]
