"""The common base of the explainers, and the decorator that registers one.

``@explainer(key, label=..., family=..., ...)`` on a class is the only place a method's
metadata is written: the registry (``core.registry``) reads it, and the CLI's flags, the
page's controls and legend, ``python -m core methods --json``, the README's table and the
contract test follow from the registry. The registry imports every module of
``core.explainers`` when first asked, so a new explainer is one module with one decorated
class (as zennit's ``@register_composite``).

Subclasses of ``BaseExplainer`` define ``explain(pair, embedder, **knobs) -> Explanation``;
their ``name``, ``label`` and ``requires`` are the decorator's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..registry import ExplainerSpec, register_explainer

C = TypeVar("C", bound=type)


def explainer(
    key: str,
    *,
    label: str,
    family: str,
    description: str,
    requires: Iterable[str] = (),
    cost: Callable[..., int | tuple[str, int] | dict[str, int]] | None = None,
    knobs: type | None = None,
    scale: str = "",
    colours: str = "",
    gives_maps: bool = True,
    needs_gallery: bool = False,
    order: int = 100,
) -> Callable[[C], C]:
    """Register the decorated class as the method ``key``.

    ``label`` is what a person reads; ``family`` groups variants (the page and the docs);
    ``description`` is one sentence with the paper; ``requires`` what the model must offer
    ("blackbox", "gradients", "vit", "clip_text"); ``cost(input_size, **knobs)`` its forward
    passes on one pair (an int, or ``(share key, n)`` / ``{share key: n}`` for methods that
    share perturbed embeddings); ``knobs`` its knob dataclass (``core.explainers.knobs``);
    ``scale`` "diverging" (signed maps) or "sequential"; ``colours`` what its colours mean
    (the legend); ``gives_maps`` False for words only; ``needs_gallery`` for methods that
    compare against gallery identities; ``order`` its place in lists (built-ins use 10-79;
    new methods default to after them). The class is constructed with no arguments.
    """

    def register(cls: C) -> C:
        spec = ExplainerSpec(key, label, cls, frozenset(requires), description, cost, family, gives_maps, scale, colours,
                             knobs, needs_gallery, order)  # fmt: skip
        setattr(cls, "name", key)  # noqa: B010 (C is any class)
        setattr(cls, "spec", spec)  # noqa: B010
        register_explainer(spec)
        return cls

    return register


class BaseExplainer:
    """An explainer without resources of its own: ``close()`` does nothing."""

    name: str  # the method's key, e.g. "grad_cam" (set by ``@explainer``)
    spec: ExplainerSpec  # its registration (set by ``@explainer``)

    @property
    def label(self) -> str:
        """What a person reads, e.g. "Grad-CAM": the registry's label of ``name``."""
        from ..registry import explainer_spec

        return explainer_spec(self.name).label

    @property
    def requires(self) -> frozenset[str]:
        """What it needs of the model, e.g. {"gradients"}: the registry's."""
        from ..registry import explainer_spec

        return explainer_spec(self.name).requires

    def close(self) -> None:
        """Release what the explainer holds. Nothing here; explainers holding resources
        (models, files, threads) override it."""


def fixed_cost(n: int) -> Callable[..., int]:
    """A cost function for a method that always runs ``n`` forward passes on a pair."""

    def cost(input_size: int, **knobs: Any) -> int:
        return n

    return cost
