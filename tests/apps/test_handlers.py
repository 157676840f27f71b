"""The handlers both apps share: model menu, examples, region table, charts, chest X-rays,
temporary files. Computations are core's; these check what reaches the page."""

import numpy as np
import pytest

from apps import handlers as H
from core.io import load_image

from ..conftest import CXR, MISC
from ..test_cxr import tiny_cxr


def test_the_model_menu_puts_the_offline_default_first_and_marks_downloads():
    choices = H.model_choices()
    assert choices[0][1] == "sface" and "offline" in choices[0][0].lower()
    from core.registry import describe_models

    offline = {r["name"] for r in describe_models() if r["offline"]}
    names = [name for _, name in choices]
    first_download = next(i for i, n in enumerate(names) if n not in offline)
    assert set(names[:first_download]) == offline  # the offline models first, the default leading
    assert all("download" in label.lower() for label, name in choices[first_download:])
    assert {"dlib_resnet", "dlib_resnet_native", "sface_flip"} <= offline


def test_runners_are_made_once_per_model(runner):
    pool = H.Runners(runner)
    assert pool.get() is runner and pool.get("sface") is runner
    clip = pool.get("clip_vit_l14")
    assert clip is pool.get("clip_vit_l14") and clip is not runner and clip.model_name == "clip_vit_l14"


def test_example_pairs_from_a_pairs_csv_or_two_by_two(tmp_path):
    for name in ("b.jpg", "a.jpg", "c.png", "d.png", "e.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert H.example_pairs(tmp_path) == [[str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")], [str(tmp_path / "c.png"), str(tmp_path / "d.png")]]
    (tmp_path / "pairs.csv").write_text("file_x,file_y,same\ne.jpg,a.jpg,0\nmissing.jpg,a.jpg,1\n")
    assert H.example_pairs(tmp_path) == [[str(tmp_path / "e.jpg"), str(tmp_path / "a.jpg")]]  # rows with a missing photo are left out
    assert H.example_pairs(None) == [] and H.example_pairs(tmp_path / "nowhere") == []


def test_temporary_files_live_under_one_process_folder():
    root = H.temp_root()
    a, b = H.work_dir("report"), H.work_dir("report")
    assert a != b and a.parent == root == b.parent and a.is_dir()


@pytest.mark.needs_data
def test_region_rows_follow_the_maps_tables(runner):
    out = H.compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "obama2.jpg"), ["xmap3"], "fast", deletion_scores=False)
    rows = out["regions"]
    assert rows and all(len(r) == len(H.REGION_HEADERS) for r in rows)
    table = out["result"].explanations[0].extras["regions"]
    mine = [r for r in rows if r[1] in ("A", "both")]
    best = max(table[0], key=lambda r: r["similar"] + r["dissimilar"])
    assert mine[0][2] == best["label"] and mine[0][3] == round(100 * best["similar"], 1)
    assert out["charts"] == []  # X-Maps carry no concept chart


def test_figure_reads_the_explainers_chart_dicts():
    from core.explainers.concepts import bar_chart

    fig = H.figure(bar_chart(["a", "b"], [0.2, 0.5], "T", "x"))
    assert list(fig.data[0].y) == ["b", "a"] and fig.layout.title.text == "T"
    assert H.figure(None) is None


@pytest.mark.needs_data
def test_an_xray_is_diagnosed_explained_and_mapped():
    out = H.diagnose_xray(H.CXRModels(tiny_cxr()), CXR / "00000001_000.png")
    assert out["ok"] and "effusion" in out["message"].lower() and "zero-shot" in out["message"]
    assert out["words"].count("\n- ") + 1 >= 3
    assert out["chart"]["data"][0]["type"] == "bar" and out["saliency"].shape == out["image"].shape
    assert "evidence for" in out["saliency_caption"]
    plain = H.diagnose_xray(H.CXRModels(tiny_cxr()), CXR / "00000001_000.png", "none")
    assert plain["saliency"] is None


def test_xray_errors_are_messages(tmp_path):
    assert "Upload a chest X-ray" in H.diagnose_xray(H.CXRModels(tiny_cxr()), None)["message"]
    bad = tmp_path / "notes.png"
    bad.write_text("not an x-ray")
    out = H.diagnose_xray(H.CXRModels(tiny_cxr()), bad)
    assert not out["ok"] and "Could not read this X-ray" in out["message"]
    missing = H.diagnose_xray(H.CXRModels(clip=str(tmp_path)), bad)  # no model folder there, and no Hub
    assert not missing["ok"] and "cannot run here" in missing["message"]


def test_faces_are_read_by_core_and_non_images_say_so(tmp_path):
    import gradio as gr

    from apps.gradio_app import UploadProblem, face_image, photo_note

    bad = tmp_path / "notes.jpg"
    bad.write_text("hello, not a photo")
    comp = face_image()
    problem = comp.preprocess(gr.FileData(path=str(bad), orig_name="notes.jpg"))  # said next to the photo, at once
    assert isinstance(problem, UploadProblem) and "notes.jpg is text, not an image" in problem
    assert photo_note(problem, "A").startswith("**Photo A cannot be used:** notes.jpg is text") and photo_note(None, "A") == ""
    good = tmp_path / "grey.png"
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(good)
    arr = comp.preprocess(gr.FileData(path=str(good), orig_name="grey.png"))
    assert arr.shape == (20, 30, 3) and int(arr[0, 0, 0]) == 90


@pytest.mark.needs_data
def test_questions_are_answered_from_the_last_result_only(runner):
    from core.chat import Chat

    chat = Chat(qa=False)
    assert "first" in H.ask(chat, None, "How sure is it?")
    assert "Ask a question" in H.ask(chat, {"kind": "faces"}, "  ")
    out = H.compare_faces(runner, load_image(MISC / "obama.jpg"), load_image(MISC / "biden.jpg"), ["cam"], "fast", deletion_scores=False)
    last = {"kind": "faces", "result": out["result"], "faithfulness": out["faithfulness"]}
    why = H.ask(chat, last, "Why not a match?")
    assert f"{out['result'].similarity:.3f}" in why and "below" in why and "built-in answer" in why
    assert "don't know" in H.ask(chat, last, "What's the weather in Paris?")
    xray = H.diagnose_xray(H.CXRModels(tiny_cxr()), CXR / "00000001_000.png")
    assert f"{xray['result'].probability:.2f}" in H.ask(chat, {"kind": "cxr", "result": xray["result"]}, "How likely is an effusion?")


@pytest.mark.needs_data
def test_a_photo_with_several_faces_shows_them_numbered_and_the_chosen_one_is_compared(runner):
    from core.inputs import load_upload

    two = load_upload((MISC / "two_people.jpg").read_bytes(), "two_people.jpg")
    found = H.faces_in_photo(runner, two, "A", chosen=1)
    assert found["ok"] and found["n"] == 2 and [i for _, i in found["choices"]] == [0, 1] and "largest" in found["choices"][0][0]
    assert found["picture"].shape[2] == 3 and max(found["picture"].shape[:2]) <= 640 and "2 faces" in found["message"]
    single = H.faces_in_photo(runner, load_image(MISC / "obama.jpg"), "B")
    assert single["n"] == 1 and single["picture"] is None and single["message"] == ""
    obama = load_upload((MISC / "obama.jpg").read_bytes(), "obama.jpg")
    by_face = {f: H.compare_faces(runner, two, obama, [], deletion_scores=False, faces=(f, None)) for f in (0, 1)}
    boxes = {f: out["result"].pair.a.box for f, out in by_face.items()}
    assert np.allclose(boxes[0], found["boxes"][0]) and np.allclose(boxes[1], found["boxes"][1])  # the face asked for, each time
    assert by_face[0]["result"].similarity != by_face[1]["result"].similarity and "as chosen" in by_face[1]["message"]
    assert by_face[1]["result"].params["faces"] == [1, None]
    inputs = by_face[1]["result"].params["inputs"]  # the report names the uploaded files and hashes their bytes
    import hashlib

    assert inputs[0]["name"] == "two_people.jpg" and inputs[0]["sha256"] == hashlib.sha256((MISC / "two_people.jpg").read_bytes()).hexdigest()
    wrong = H.compare_faces(runner, two, obama, [], deletion_scores=False, faces=(4, None))
    assert not wrong["ok"] and "choose 1 to 2" in wrong["message"]


def test_a_photo_over_20_mb_is_refused_next_to_it_with_its_size(tmp_path):
    import gradio as gr

    from apps.gradio_app import UploadProblem, face_image, photo_note

    big = tmp_path / "huge.jpg"
    with big.open("wb") as f:
        f.truncate(H.MAX_PHOTO_BYTES + 1_500_000)  # never read: refused on its size
    problem = face_image().preprocess(gr.FileData(path=str(big), orig_name="huge.jpg"))
    assert isinstance(problem, UploadProblem) and "huge.jpg is 21.5 MB, over the 20 MB a photo may have here" in problem
    assert photo_note(problem, "B").startswith("**Photo B cannot be used:** huge.jpg is 21.5 MB")


def test_no_face_in_an_upload_is_said_at_once(runner):
    found = H.faces_in_photo(runner, np.full((200, 200, 3), 128, np.uint8), "A")
    assert not found["ok"] and found["message"].startswith("**Photo A:** no face found in photo A")
