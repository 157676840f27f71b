"""The Gradio page's small parts: reading an upload (and saying at once what is wrong with
it), the X-ray tab's status and preview, the viewer's outputs, the chat's history marks and
the cancellable call of model work. Wiring helpers only; the numbers come from ``core``
through ``apps.handlers`` and ``apps.grid``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from apps.grid import gallery_method, viewer
from apps.handlers import MAX_PHOTO_BYTES, CXRModels
from apps.uploads import BUNDLE_SUFFIXES
from apps.work import ServerStoppingError, run_cancellable
from core.errors import XFVError
from core.inputs import load_upload


class UploadProblem(str):
    """A photo that could not be read, as its message: handlers show it next to the upload
    (at once, not after Compare) instead of a toast that fades."""


def read_upload(payload: Any) -> np.ndarray | UploadProblem | None:
    """An uploaded photo read by ``core.io.load_image`` (size limits, EXIF orientation, clear
    messages): a file that is not an image gives the user a sentence saying so instead of a
    decoder's traceback (an ``UploadProblem``), and so does a photo over ``MAX_PHOTO_BYTES``.
    The pixels come as a ``core.inputs.SourcedImage``: the report names the uploaded file and
    its SHA-256. Webcam and clipboard pictures arrive the same way."""
    if payload is None:
        return None
    path = getattr(payload, "path", None)
    if path is None or not Path(path).is_file():
        return UploadProblem("the photo did not arrive; upload it again")
    name = getattr(payload, "orig_name", None) or Path(path).name
    try:
        if Path(path).stat().st_size > MAX_PHOTO_BYTES:  # said before the bytes are read
            return UploadProblem(f"{name} is {Path(path).stat().st_size / 1e6:.1f} MB, over the {MAX_PHOTO_BYTES / 1e6:.0f} MB a photo may "
                                 "have here; save it smaller (e.g. as JPEG, or at most about 4,000 px a side)")  # fmt: skip
        return load_upload(Path(path).read_bytes(), name, MAX_PHOTO_BYTES)  # remembers the file's name and SHA-256 for the report
    except XFVError as e:
        return UploadProblem(str(e))


def photo_note(image: Any, side: str) -> str:
    """What the page says next to photo ``side`` right after its upload: the problem and
    what to do, or nothing."""
    if isinstance(image, UploadProblem):
        return f"**Photo {side} cannot be used:** {image}. Upload a JPEG, PNG, WebP, BMP or TIFF photo of a face (at most 20 MB)."
    return ""


def face_image(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` input whose uploads go through ``read_upload`` (an instance override:
    a subclass would make Gradio write a .pyi stub next to this file)."""
    comp = gr.Image(type="numpy", sources=["upload", "webcam", "clipboard"], height=360, **kwargs)
    comp.preprocess = read_upload  # type: ignore[method-assign]
    return comp


#: Photo types the Explore upload takes besides the CSV and .zip.
PHOTO_SUFFIXES = sorted(BUNDLE_SUFFIXES - {".csv"})


def xray_status_text(models: CXRModels) -> str:
    """What the chest X-ray tab says on opening: ready, or what is missing and the one
    command that fetches it (``core.models.cxr.cxr_status``: a look at the disk, no load)."""
    if getattr(models, "_model", None) is not None:  # a model given to the app (tests, a local build)
        return ""
    from core.models.cxr import cxr_status

    status = cxr_status(models.clip, models.head or "")
    return f"_{status.message}_" if status.ready else f"**Not ready here.** {status.message}"


def preview_xray(path: str) -> np.ndarray:
    """The upload as the model will read it (``core.cxr.preview``: DICOM windowed), at most 512 px."""
    from core.cxr import preview

    return preview(path)


#: How many suggested questions the chat offers at once.
SUGGESTION_SLOTS = range(4)


def _last_scope(history: list[dict[str, Any]]) -> str | None:
    """The result id of the last "new result" mark in the chat's history."""
    for m in reversed(history):
        meta = m.get("metadata") if isinstance(m, dict) else None
        if isinstance(meta, dict) and meta.get("id"):
            return str(meta["id"])
    return None


def _viewer_updates(view: dict[str, Any] | None) -> list[Any]:
    """Title, picture, raw maps, colour bar, words and method of the viewer."""
    if not view or not view.get("ok"):
        message = (view or {}).get("message", "_Compare two photos, then click a map of the grid to see it here._")
        return [message, None, None, None, "", None]
    return [view["title"], view["image"], view["raw"], view["bar"], view["words"], view["method"]]


def on_cell(last: dict[str, Any] | None, opacity: float, evt: gr.SelectData) -> list[Any]:
    """The viewer of the grid cell clicked, for the face tab's last result or Explore's pair
    (both ``{"kind": "faces", "result": PairResult}``)."""
    if not last or last.get("kind") != "faces":
        return _viewer_updates(None)
    res = last["result"]
    return _viewer_updates(viewer(res, gallery_method(res, evt.index), opacity))


def on_opacity(last: dict[str, Any] | None, opacity: float, method: str | None) -> list[Any]:
    """The viewer of ``method`` again, at another opacity."""
    if not last or last.get("kind") != "faces" or not method:
        return _viewer_updates(None)
    return _viewer_updates(viewer(last["result"], method, opacity))


async def cancellable(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` through ``apps.work.run_cancellable``: a cancelled request stops its
    work (and holds the model's queue slot until it has); a stopping server answers with
    a message."""
    try:
        return await run_cancellable(fn, *args)
    except ServerStoppingError as e:
        raise gr.Error(str(e)) from None


def _method_notes(panels: list[dict[str, Any]]) -> str:
    """What the grid cannot show: methods that failed (their error) and explanations in words."""
    lines = []
    for p in panels:
        if p["error"]:
            lines.append(f"**{p['label']}**: {p['error']}")
        elif p["image"] is None:
            lines.append(f"**{p['label']}**" + "".join(f"\n- {t}" for t in p["text"]))
    return "\n\n".join(lines)
