"""Real-browser tests: Playwright drives Debian's Chromium (``/usr/bin/chromium``, never a
downloaded browser) against ``python app.py`` served on a free loopback port.

- Two real faces -> Compare -> the decision text, the aligned crops and the default
  method's map appear; a full-page screenshot is saved (under pytest's ``tmp_path``, and
  copied to the folder ``XFV_SCREENSHOTS`` names, if set).
- The Explore tab runs an uploaded .zip; rows naming files outside it get "not in your upload".
- A text file named ``notes.jpg`` reaches the server, which refuses it with
  ``core.io.load_image``'s sentence next to the photo, at once; a ``notes.txt`` is refused by
  Gradio's browser side before any upload.

Chromium is installed with ``apt-get`` if it is missing (skipped with the reason when that
cannot be done). The app and the browser are always closed by the fixtures' finalisers.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import MISC

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]
#: Starting the app imports torch and loads the face model; comparing runs X-Map III and its
#: deletion score on two CPU cores shared with other work.
START_TIMEOUT_S = 120
COMPARE_TIMEOUT_MS = 150_000


def _ensure_chromium() -> Path:
    """``/usr/bin/chromium``, installed with ``apt-get`` if missing; skips when it cannot be."""
    if CHROMIUM.is_file():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium package")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing; install it as root: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for cmd in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"], ["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):  # fmt: skip
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"{CHROMIUM} is missing and `{' '.join(cmd)}` failed: {e}")
        log.append(f"$ {' '.join(cmd)} -> {done.returncode}\n{(done.stdout + done.stderr)[-800:]}")
        if CHROMIUM.is_file():
            return CHROMIUM
    pytest.skip(f"{CHROMIUM} is missing and could not be installed (no network to Debian's mirrors?):\n" + "\n".join(log))


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    return _ensure_chromium()


@pytest.fixture(scope="module")
def app_url():
    """``python app.py`` on a free loopback port (``benchmarks.load_app.LocalServer``: its
    output goes to a log file, whose tail a failure shows)."""
    from benchmarks.load_app import LocalServer

    from ..conftest import DEEPFACE

    # as `make demo` beside ../shared/data: its labelled pairs as examples, its identities as SDD's gallery
    server = LocalServer(env={"XFV_EXAMPLES": str(DEEPFACE / "pairs.csv"), "XFV_GALLERY": str(DEEPFACE / "identities.csv")})
    try:
        try:
            server.wait(START_TIMEOUT_S)
        except RuntimeError as e:
            pytest.fail(str(e))
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(chromium_path):
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(chromium_path), headless=True, args=BROWSER_ARGS)
    except Exception:
        pw.stop()
        raise
    try:
        yield b
    finally:
        try:
            b.close()
        finally:
            pw.stop()


@pytest.fixture
def page(browser, app_url):
    """A fresh page on the face tab, once the app's front end has rendered."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(app_url)
        pg.wait_for_selector("#compare", state="visible", timeout=60_000)
        yield pg
    finally:
        context.close()


def _upload(page, elem_id: str, path: Path) -> None:
    # gr.Image keeps a hidden <input type=file accept="image/*"> inside its block.
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


#: Pictures that show (or blend) a photo: pixelated in the screenshots kept for the README,
#: whose photos are third-party pictures that are not committed. Maps alone and colour bars stay.
PHOTO_SELECTORS = ("#photo_a img", "#photo_b img", "#photo_a_faces img", "#photo_b_faces img", "#crop_a img", "#crop_b img",
                   "#method-grid img", "#method-grid-2 img", "#viewer-image img", "#explore_maps img", "#explore_viewer_image img",
                   ".gallery-item img", "[data-testid=examples] img", "table img")  # fmt: skip


def _photo_rects(page) -> list[list[float]]:
    """Page coordinates of every visible picture of ``PHOTO_SELECTORS``."""
    return page.evaluate(
        """sels => sels.flatMap(s => [...document.querySelectorAll(s)]).filter(i => i.offsetParent !== null).map(i => {
               const r = i.getBoundingClientRect();
               return [r.left + window.scrollX, r.top + window.scrollY, r.right + window.scrollX, r.bottom + window.scrollY]; })""",
        list(PHOTO_SELECTORS),
    )


def _pixelate_photos(shot: Path, rects: list[list[float]], out: Path, blocks: int = 14) -> None:
    """``shot`` with each of ``rects`` pixelated, ``blocks`` squares (at least 12 px) along its
    short side, as ``out``."""
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    for x1, y1, x2, y2 in rects:
        box = (max(0, int(x1)), max(0, int(y1)), min(img.width, int(x2) + 1), min(img.height, int(y2) + 1))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        part = img.crop(box)
        block = max(12, min(part.size) // blocks)
        small = part.resize((max(1, part.width // block), max(1, part.height // block)), Image.BILINEAR)
        img.paste(small.resize(part.size, Image.NEAREST), box[:2])
    img.save(out, optimize=True)


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot under ``tmp_path``, copied to ``$XFV_SCREENSHOTS`` when set,
    with a copy whose photos are pixelated (``<name>-redacted.png``, what the README shows)."""
    shot = tmp_path / f"{name}.png"
    for _ in range(5):  # the pictures' places must be those of the screenshot: retake it while the layout still moves
        before = _photo_rects(page)
        page.screenshot(path=str(shot), full_page=True)
        rects = _photo_rects(page)
        if rects == before:
            break
        page.wait_for_timeout(500)
    if os.environ.get("XFV_SCREENSHOTS"):
        out = Path(os.environ["XFV_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / shot.name)
        _pixelate_photos(shot, rects, out / f"{name}-redacted.png")
    return shot


def _toast_texts(page) -> list[str]:
    return page.locator("[data-testid=toast-text]").all_inner_texts()


@pytest.mark.needs_data
def test_browser_compares_two_faces_and_shows_the_maps(page, tmp_path):
    expect = sync_api.expect
    # The default method is pre-selected; CAM, Grad-CAM and SDD (with the demo gallery) join it.
    assert page.locator("#methods input[name=xmap3]").is_checked()
    for name in ("cam", "grad_cam", "sdd"):
        page.locator(f"#methods input[name={name}]").check()
    expect(page.locator("#gallery_note")).to_contain_text("identities.csv")

    _upload(page, "photo_a", MISC / "obama.jpg")
    _upload(page, "photo_b", MISC / "obama2.jpg")
    expect(page.locator("#photo_a img").first).to_be_visible()
    expect(page.locator("#photo_b img").first).to_be_visible()
    page.click("#compare")

    # The verdict's own markdown (not its progress tracker) gets the decision, or an error
    # toast appears: stop waiting at whichever comes first.
    verdict = page.locator("#verdict [data-testid=markdown]")
    page.wait_for_function(
        """() => {
            const md = document.querySelector('#verdict [data-testid=markdown]');
            return (md && md.innerText.trim().length > 0) || document.querySelector('.toast-body.error') !== null;
        }""",
        timeout=COMPARE_TIMEOUT_MS,
    )
    text = verdict.inner_text()
    assert "same person" in text.lower(), f"verdict {text!r}; toasts {_toast_texts(page)}"
    expect(page.locator("#cscore")).to_contain_text("C-Score")

    # The aligned crops, the method grid (X-Map III for face A and face B) and the viewer are loaded images.
    for sel in ("#crop_a img", "#crop_b img", "#method-grid img", "#viewer-image img", "#viewer-bar img"):
        page.wait_for_function(
            "sel => { const i = document.querySelector(sel); return i !== null && i.complete && i.naturalWidth > 0; }", arg=sel, timeout=60_000
        )
    page.wait_for_function("() => document.querySelectorAll('#method-grid img').length >= 8", timeout=60_000)
    cells = page.locator("#method-grid img")
    assert cells.count() == 8 and all(w >= 224 for w in cells.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
    assert "SDD" in page.locator("#method-grid").inner_text() and "needs a gallery" not in page.locator("#words").inner_text()
    expect(page.locator("#legend")).to_contain_text("green - grey - red")
    expect(page.locator("#legend")).to_contain_text("dark - bright")
    # the viewer shows both faces whole and large: its picture is the pair of maps, not a crop
    view = page.locator("#viewer-image img").first
    w, h = view.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert h >= 512 and w == 2 * h + 8, (w, h)
    cells.nth(6).click()  # face B's Grad-CAM cell
    expect(page.locator("#viewer")).to_contain_text("Grad-CAM")

    data = _screenshot(page, tmp_path, "face_tab").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"screenshot of {len(data)} bytes"


def test_browser_text_file_named_jpg_gets_a_not_an_image_message(page, tmp_path):
    from core.errors import InvalidImageError
    from core.io import load_image

    notes = tmp_path / "notes.jpg"
    notes.write_text("These are my notes, not a photo.\n")
    stream = io.BytesIO(notes.read_bytes())
    stream.name = "notes.jpg"  # the app names the upload by its original file name
    with pytest.raises(InvalidImageError) as err:
        load_image(stream)
    expected = str(err.value)

    # The .jpg name passes the browser's accept="image/*" check, so the server sees the file
    # and says at once, next to the photo, what is wrong (before any Compare).
    _upload(page, "photo_a", notes)
    note = page.locator("#photo_a_note")
    sync_api.expect(note).to_contain_text("Photo A cannot be used", timeout=60_000)
    text = note.inner_text()
    assert "not an image" in text and expected in text, text
    _upload(page, "photo_b", notes)
    sync_api.expect(page.locator("#photo_b_note")).to_contain_text("Photo B cannot be used", timeout=60_000)
    page.click("#compare")
    sync_api.expect(page.locator("#verdict")).to_contain_text("cannot be used", timeout=60_000)
    assert page.locator("#crop_a img").count() == 0


@pytest.mark.needs_data
def test_browser_several_faces_are_drawn_and_the_chosen_one_is_compared(page, tmp_path):
    """A photo with two faces shows them numbered with a choice; the face chosen is the one compared."""
    _upload(page, "photo_a", MISC / "two_people.jpg")
    page.wait_for_function(
        "() => { const i = document.querySelector('#photo_a_faces img'); return i && i.complete && i.naturalWidth > 0; }", timeout=60_000
    )
    sync_api.expect(page.locator("#photo_a_note")).to_contain_text("holds 2 faces")
    options = page.locator("#photo_a_pick input[type=radio]")
    assert options.count() == 2
    page.locator("#photo_a_pick").get_by_text("face 2").click()
    _upload(page, "photo_b", MISC / "obama.jpg")
    expect_b = page.locator("#photo_b img").first
    sync_api.expect(expect_b).to_be_visible()
    assert page.locator("#photo_b_faces img").count() == 0  # one face: nothing to choose
    page.locator("#methods input[name=xmap3]").uncheck()
    page.click("#compare")
    sync_api.expect(page.locator("#verdict")).to_contain_text("as chosen", timeout=COMPARE_TIMEOUT_MS)
    assert "same person" in page.locator("#verdict").inner_text().lower()  # face 2 of two_people.jpg is Obama
    _screenshot(page, tmp_path, "several_faces")


def test_browser_a_photo_over_20_mb_is_refused_next_to_it(page, tmp_path):
    big = tmp_path / "huge.jpg"
    with big.open("wb") as f:
        f.truncate(21_000_000)
    _upload(page, "photo_b", big)
    sync_api.expect(page.locator("#photo_b_note")).to_contain_text("huge.jpg is 21.0 MB, over the 20 MB", timeout=60_000)


def test_browser_refuses_a_txt_file_before_uploading(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("These are my notes, not a photo.\n")
    _upload(page, "photo_a", notes)
    toast = page.locator("[data-testid=toast-text]").filter(has_text="notes.txt").first
    sync_api.expect(toast).to_be_visible(timeout=15_000)
    text = toast.inner_text()
    assert "invalid file type" in text.lower() and "image" in text.lower(), text
    # Nothing was taken: the upload area is still empty.
    assert page.locator("#photo_a img").count() == 0


@pytest.mark.needs_data
def test_browser_explore_runs_an_uploaded_zip_and_reads_nothing_else(page, tmp_path):
    """The Explore tab as a user meets it: one .zip of a pairs CSV and its photos; the rows
    naming /etc/passwd and ../secret.jpg get "not in your upload", the others are compared."""
    import zipfile

    from ..conftest import DEEPFACE

    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("pairs.csv", "file_x,file_y,same\nimg5.jpg,img10.jpg,1\n/etc/passwd,img5.jpg,0\n../secret.jpg,img5.jpg,1\n")
        for name in ("img5.jpg", "img10.jpg"):
            z.write(DEEPFACE / name, name)
    page.get_by_role("tab", name="Explore").click()
    assert page.get_by_label("...or a CSV or folder on this server").count() == 0  # no server paths on a public app
    page.locator("#explore_upload input[type=file]").set_input_files(str(archive))
    page.locator("#explore_upload").get_by_text("batch.zip").first.wait_for()
    page.click("#explore_run")
    page.locator("#explore_summary").get_by_text("3").first.wait_for(timeout=COMPARE_TIMEOUT_MS)
    sync_api.expect(page.locator("#explore_summary")).to_contain_text("1 compared, 2 failed", timeout=COMPARE_TIMEOUT_MS)
    table = page.locator("#explore_table")
    sync_api.expect(table).to_contain_text("/etc/passwd: not in your upload")
    sync_api.expect(table).to_contain_text("../secret.jpg: not in your upload")
    table.locator("span.text:visible").filter(has_text="img10.jpg").first.click()  # the compared row: its grid and the viewer, whole maps
    # one method: face A's row and face B's, each padded to four cells so that no cell spans the page
    page.wait_for_function("() => document.querySelectorAll('#explore_maps img').length == 8", timeout=60_000)
    shown = page.locator("#explore_maps img").first.evaluate("i => [i.getBoundingClientRect().width, i.getBoundingClientRect().height]")
    assert max(shown) <= 400, f"a grid cell is displayed at {shown} px: blown up past its 256 px"
    page.wait_for_function(
        "() => { const i = document.querySelector('#explore_viewer_image img'); return i && i.complete && i.naturalWidth > 0; }", timeout=60_000
    )
    w, h = page.locator("#explore_viewer_image img").first.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert h >= 512 and w == 2 * h + 8, (w, h)
    _screenshot(page, tmp_path, "explore_tab")


def test_browser_xray_tab_says_what_is_missing_and_previews_a_dicom(page, tmp_path):
    """Before any upload the tab says what is missing and the one command that fetches it;
    a DICOM upload is previewed, windowed as the model reads it."""
    import numpy as np

    from ..hostile import dicom

    page.get_by_role("tab", name="Chest X-ray").click()
    status = page.locator("#cxr_status")
    sync_api.expect(status).to_contain_text("python -m core fetch-weights cxr")
    dicom(tmp_path / "x.dcm", (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) % 4096))  # a 64 x 48 16-bit X-ray
    page.locator("#xray input[type=file]").set_input_files(str(tmp_path / "x.dcm"))
    page.wait_for_function(
        "() => { const i = document.querySelector('#cxr_preview img'); return i && i.complete && i.naturalWidth > 0; }", timeout=60_000
    )
    assert page.locator("#cxr_preview img").first.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [48, 64]
    _screenshot(page, tmp_path, "xray_tab")


@pytest.mark.needs_data
def test_browser_chat_answers_from_the_send_button_and_a_suggestion(page, tmp_path):
    _upload(page, "photo_a", MISC / "obama.jpg")
    _upload(page, "photo_b", MISC / "obama2.jpg")
    page.locator("#methods input[name=xmap3]").uncheck()
    page.click("#compare")
    sync_api.expect(page.locator("#verdict")).to_contain_text("same person", timeout=COMPARE_TIMEOUT_MS)
    page.get_by_role("tab", name="Ask about the result").click()
    suggestion = page.locator("#suggestion-0")
    sync_api.expect(suggestion).to_be_visible(timeout=30_000)
    asked = suggestion.inner_text()
    suggestion.click()
    bot = page.locator("#chatbot")
    sync_api.expect(bot).to_contain_text(asked, timeout=30_000)
    sync_api.expect(bot).to_contain_text("answer match")
    page.locator("#question textarea").fill("How sure is it?")
    page.click("#send")
    sync_api.expect(bot).to_contain_text("C-Score", timeout=30_000)
    assert "About this result" in bot.inner_text()  # answers are marked with the comparison they are about
    _screenshot(page, tmp_path, "chat_tab")


@pytest.mark.needs_data
def test_browser_compares_two_models_side_by_side(page, tmp_path):
    """A second model chosen: both decisions, its own grid of maps and the comparison table."""
    import re

    page.locator("#model2 input").click()
    page.get_by_role("option", name="dlib ResNet face descriptor (offline)", exact=True).click()
    sync_api.expect(page.locator("#model2 input")).to_have_value("dlib ResNet face descriptor (offline)")
    assert page.locator("#methods input[name=xmap3]").is_checked()  # X-Map III, the default method
    _upload(page, "photo_a", MISC / "obama.jpg")
    _upload(page, "photo_b", MISC / "obama2.jpg")
    sync_api.expect(page.locator("#photo_b img").first).to_be_visible()
    page.click("#compare")
    table = page.locator("#model-compare")
    sync_api.expect(table).to_contain_text("dlib_resnet", timeout=COMPARE_TIMEOUT_MS)
    text = table.inner_text()
    assert "sface" in text and "X-Map III" in text and re.search(r"rank correlation of the maps [+-]\d\.\d\d and [+-]\d\.\d\d", text), text
    assert re.search(r"X-Map III[^\n]*\t[+-]\d\.\d\d\t[+-]\d\.\d\d\t", text), text  # the table's row: both faces' correlations
    verdict = page.locator("#verdict").inner_text()
    assert "sface" in verdict and "dlib_resnet" in verdict and "same person" in verdict.lower(), verdict
    assert page.locator("#cscore").inner_text().count("C-Score") == 2
    for grid in ("#method-grid", "#method-grid-2"):
        page.wait_for_function(
            "sel => { const i = [...document.querySelectorAll(sel + ' img')]; "
            "return i.length >= 8 && i.every(x => x.complete && x.naturalWidth > 0); }",
            arg=grid, timeout=60_000,
        )  # fmt: skip
    sync_api.expect(page.locator("#method-grid-2")).to_contain_text("dlib_resnet")
    data = _screenshot(page, tmp_path, "two_models").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
