"""The real-weights lane (``make test-weights``, marker ``weights``): the download-only models
(CLIP ViT-L-14, its concept bottleneck, BiomedCLIP, the BERT QA model) run for real.

Every test here is marked ``weights`` (deselected by the default ``-m 'not weights'``) and
starts with ``need(model)``: where ``python -m core fetch-weights MODEL`` has not filled the
caches, the test is skipped with the first missing file, its URL and where it goes."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before the mark plugin deselects by -m
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.weights)


def need(model: str) -> None:
    """Skip the calling test unless every file of ``model`` (a ``core.models.downloads``
    name) is on this machine; the reason names the first missing file and how to fetch it.
    ``cxr`` also counts as present when ``cxr_status`` finds its model ready (e.g. an
    open_clip folder in ``XFV_CXR_CLIP``)."""
    from core.models.downloads import plan

    missing = [p for p in plan([model]) if p.found is None]
    if not missing:
        return
    if model == "cxr":
        from core.models.cxr import cxr_status

        if cxr_status(head="").ready:
            return
    p = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    pytest.skip(f"{model}: missing {p.url} -> {p.dest}{more}; run `python -m core fetch-weights {model}`")
