"""The page's advanced settings, generated from the explainers' typed knobs
(``core.registry.describe_explainers``: name, type, default, range, choices, help), so that a
knob added to an explainer's dataclass appears on the page with no change here. Values the
user leaves empty keep the preset's; a value out of range is refused by the explainer with
an ``InvalidParameterError`` shown in that method's panel.
"""

from __future__ import annotations

from typing import Any

#: Knobs the page does not offer: the preset (its own menu) and a file path on the server
#: (``geometry_reference``: a public page must not read the server's files by name).
PAGE_KNOBS = frozenset({"preset", "geometry_reference"})


def knob_specs() -> list[dict[str, Any]]:
    """Each knob once, in registry order (``core.registry.knob_table``), with ``methods``: the
    labels of the methods that take it."""
    from core.registry import explainer_spec, knob_table

    return [{**k, "methods": [explainer_spec(m).label for m in k["methods"]]} for k in knob_table(skip=tuple(PAGE_KNOBS)).values()]


def knob_label(spec: dict[str, Any]) -> str:
    """A control's label: the knob's name and the families that take it (first label of each)."""
    families = list(dict.fromkeys(m.split(" (")[0] for m in spec["methods"]))
    shown = ", ".join(families[:3]) + (" ..." if len(families) > 3 else "")
    return f"{spec['name']} ({shown})"


def knob_info(spec: dict[str, Any]) -> str:
    """A control's one-line help: what it does, its default and what is allowed."""
    default = spec["default"] if not isinstance(spec["default"], list) else ",".join(str(v) for v in spec["default"])
    allowed = ""
    lo, hi = spec["low"], spec["high"]
    if lo is not None or hi is not None:
        span = f"{lo:g}..{hi:g}" if lo is not None and hi is not None else f"at least {lo:g}" if lo is not None else f"at most {hi:g}"
        allowed = f"; allowed {span}" + (" each" if spec["type"].startswith("tuple") else "")
    return f"{spec['help']} (default {default}{allowed}; empty: the preset's value)"


def parse_knob(spec: dict[str, Any], value: Any) -> Any:
    """A control's value as the explainer takes it: None when empty; a tuple of numbers from
    "7,14,28"; a grey level from "128"; else the value. Text that is not a number where one is
    needed is passed on as it is, for the explainer's own message naming the knob."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    t = spec["type"]
    if t.startswith("tuple"):
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        try:
            return tuple(int(p) if "int" in t else float(p) for p in parts)
        except ValueError:
            return tuple(parts)
    if t == "int":
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return value
    if t == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if isinstance(value, str):  # a hiding value: a name or a grey level
        try:
            return float(value)
        except ValueError:
            return value.strip()
    return value


def knobs_from(values: dict[str, Any] | None) -> dict[str, Any]:
    """The explainer knobs of the page's advanced settings (``{name: control value}``), empty ones left out."""
    specs = {s["name"]: s for s in knob_specs()}
    out = {}
    for name, value in (values or {}).items():
        if name in specs and (v := parse_knob(specs[name], value)) is not None:
            out[name] = v
    return out
