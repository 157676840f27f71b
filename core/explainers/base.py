"""The common base of the explainers: what the ``Explainer`` protocol of ``core.types`` asks
for besides ``explain``, with defaults.

Subclasses set ``name`` (as a class attribute, or in ``__init__`` when one class serves
several methods) and define ``explain(pair, embedder, **knobs) -> Explanation``. Their
``label`` and ``requires`` are the registry's (``core.registry``), so that the page, the
report, the CLI and the explanation name a method in the same words.
"""

from __future__ import annotations


class BaseExplainer:
    """An explainer without resources of its own: ``close()`` does nothing."""

    name: str  # the method's key, e.g. "grad_cam"

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
