import json
import subprocess
import sys

import pytest

from core.__main__ import main

from .conftest import DEEPFACE, MISC, ROOT


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.needs_data
def test_verify_same_person_with_high_cscore(capsys):
    out = _json(capsys, ["verify", str(MISC / "obama.jpg"), str(MISC / "obama2.jpg"), "--json", "--device", "cpu"])
    assert {"same", "similarity", "threshold", "c_score", "model"} <= set(out)
    assert out["same"] is True and out["c_score"] >= 0.9 and out["model"] == "sface"
    assert out["similarity"] >= out["threshold"]


@pytest.mark.needs_data
def test_verify_different_people(capsys):
    out = _json(capsys, ["verify", str(MISC / "obama.jpg"), str(MISC / "biden.jpg"), "--json", "--device", "cpu"])
    assert out["same"] is False and out["similarity"] < out["threshold"]
    assert 0.5 <= out["c_score"] <= 1.0


@pytest.mark.needs_data
def test_verify_notes_several_faces(capsys):
    out = _json(capsys, ["verify", str(MISC / "two_people.jpg"), str(MISC / "obama.jpg"), "--json", "--device", "cpu"])
    assert "faces were found" in out["note"] and out["faces_found"][0] >= 2


@pytest.mark.needs_data
def test_verify_plain_text(capsys):
    assert main(["verify", str(MISC / "obama.jpg"), str(MISC / "obama3.jpg"), "--device", "cpu"]) == 0
    assert "same person" in capsys.readouterr().out.lower()


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    assert main(["verify", str(txt), str(txt), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "text, not an image" in err and "Traceback" not in err


@pytest.mark.needs_data
def test_no_face_exits_2(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    p = tmp_path / "wall.png"
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(p)
    assert main(["verify", str(p), str(MISC / "obama.jpg"), "--device", "cpu"]) == 2
    assert "no face found" in capsys.readouterr().err


def test_offline_download_model_exits_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["verify", "a.jpg", "b.jpg", "--model", "facenet_vggface2", "--threshold", "0.5"]) == 2
    assert "Download it from" in capsys.readouterr().err


def test_models_listing(capsys):
    rows = _json(capsys, ["models", "--json"])
    assert rows[0]["name"] == "sface" and rows[0]["offline"] is True


@pytest.mark.slow
@pytest.mark.needs_data
def test_eval_on_the_deepface_pairs_reaches_auc_099():
    """The issue's acceptance figure, through the real command line."""
    proc = subprocess.run(
        [sys.executable, "-m", "core", "eval", str(DEEPFACE / "pairs.csv"), "--images", str(DEEPFACE), "--json", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_pairs"] == 300 and out["failed"] == 0
    assert out["roc_auc"] >= 0.99
    assert out["accuracy"] >= 0.95
    assert "faces" in proc.stderr  # the progress bar


@pytest.mark.slow
@pytest.mark.needs_data
def test_calibrate_from_identities_reproduces_the_shipped_file(tmp_path):
    out = tmp_path / "sface.json"
    proc = subprocess.run(
        [sys.executable, "-m", "core", "calibrate", str(DEEPFACE / "identities.csv"), "--images", str(DEEPFACE),
         "--out", str(out), "-q", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    new = json.loads(out.read_text())
    shipped = json.loads((ROOT / "assets" / "calibration" / "sface.json").read_text())
    assert new["n_genuine"] == 140 and new["n_impostor"] == 1690
    assert new["threshold_distance"] == pytest.approx(shipped["threshold_distance"], abs=1e-3)


@pytest.mark.needs_data
def test_explain_writes_pictures_maps_and_region_tables(capsys, tmp_path):
    import numpy as np
    from PIL import Image

    out = tmp_path / "out"
    argv = ["explain", str(MISC / "obama.jpg"), str(MISC / "obama2.jpg"), "--methods", "xmap3,single_removal",
            "--out", str(out), "--preset", "fast", "--device", "cpu", "-q"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "The same person" in text and "X-Map III" in text and "Single removal" in text
    data = json.loads((out / "result.json").read_text())
    assert [e["method"] for e in data["explanations"]] == ["xmap3", "single_removal"]
    for e in data["explanations"]:
        assert e["error"] is None and e["scores"]["forward_passes"] >= 0
        for name in ("a", "b", "pair"):
            img = Image.open(out / e["files"][name])
            assert img.size[1] == 112
        maps = np.load(out / e["files"]["maps"])
        assert maps["a"].shape == (112, 112)
        tables = e["extras"]["regions"]
        assert len(tables) == 2
        for rows in tables:
            assert {r["region"] for r in rows} >= {"nose", "left_eye", "right_eye", "mouth", "other"}
            assert abs(sum(r["similar"] for r in rows) - 1) < 1e-6
        assert any("%" in t for t in e["text"])
    assert data["explanations"][0]["extras"]["preset"] == "fast"


def test_explain_cost_only(capsys):
    assert main(["explain", "a.jpg", "b.jpg", "--methods", "xmap1,xmap2,xmap3", "--cost"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "shared" in lines[1] and lines[-1].split()[1] == lines[0].split()[1]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["explain", "a.jpg", "b.jpg", "--methods", "xmap9", "--cost"], "argument --methods: unknown method 'xmap9'; choose from: xmap1, xmap2"),
        (["explain", "a.jpg", "b.jpg", "--methods", "cam,nope,xmap0"], "unknown methods 'nope', 'xmap0'; choose from:"),
        (["explain", "a.jpg", "b.jpg", "--patch-sizes", "0"], "argument --patch-sizes: each value of --patch-sizes must be 1 to 112, got 0"),
        (["explain", "a.jpg", "b.jpg", "--patch-sizes", "7,,x"], "each value of --patch-sizes must be a whole number, got 'x'"),
        (["explain", "a.jpg", "b.jpg", "--fill", "mauve"], "argument --fill: unknown fill 'mauve'"),
        (["explain", "a.jpg", "b.jpg", "--grid-step", "256"], "argument --grid-step: --grid-step must be 1 to 255, got 256"),
        (
            ["explain", "a.jpg", "b.jpg", "--masking", "best"],
            "--masking: invalid choice: 'best' (choose from 'select', 'oim', 'um', 'nium')",
        ),
        (["explain", "a.jpg", "b.jpg", "--stride", "0"], "argument --stride: --stride must be 1 to 112, got 0"),
        (["explain", "a.jpg", "b.jpg", "--edge-blur", "-1"], "argument --edge-blur: --edge-blur must be 0 to 112, got -1"),
        (["batch", "pairs.csv", "--methods", "grad_cam,gradcam"], "unknown method 'gradcam'"),
        (["faithfulness", "pairs.csv", "--methods", "xmap9"], "unknown method 'xmap9'"),
    ],
)
def test_bad_methods_and_knobs_fail_at_argument_parsing_naming_what_is_allowed(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)  # before any file is read or model loaded: a.jpg does not exist
    assert exit_.value.code == 2
    assert said in capsys.readouterr().err


def test_an_empty_methods_list_is_allowed_for_a_batch():
    from core.__main__ import build_parser

    assert build_parser().parse_args(["batch", "pairs.csv", "--methods", ""]).methods == []
    assert build_parser().parse_args(["explain", "a", "b"]).methods == ["xmap3"]  # the default is parsed too


def test_faithfulness_command_passes_knobs_and_writes_csv(tmp_path, monkeypatch, capsys):
    import numpy as np

    from core.cli import batch as cli
    from core.evaluate import faithfulness as fm
    from core.registry import _EXPLAINERS, ExplainerSpec

    from .evaluate.test_faithfulness import FACES, FakeRunner

    for name in ("region", "boom"):  # the fake runner's methods, registered so that --methods accepts them
        monkeypatch.setitem(_EXPLAINERS, name, ExplainerSpec(name, name, lambda: None))
    runner = FakeRunner(FACES)
    monkeypatch.setattr(cli, "_runner", lambda args: runner)
    seen = {}
    real = fm.faithfulness

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fm, "faithfulness", spy)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\nbright.png,bright2.png,1\nbright.png,dim.png,0\nbright.png,noface.png,1\n")
    out = tmp_path / "faith.csv"
    argv = ["faithfulness", str(pairs), "--methods", "region,boom", "--gallery", "gal/", "--sdd-mode", "identification",
            "--competitors", "3", "--fill", "128", "--steps", "6", "--top-share", "0.4", "--batch-size", "2", "--seed", "5",
            "--csv", str(out), "-q"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    methods, knobs = runner.calls[0]
    assert methods == ["region", "boom"]
    assert knobs == {"preset": "fast", "gallery": "gal/", "sdd_mode": "identification", "competitors": 3, "seed": 5, "batch_size": 2}
    assert seen["fill"] == 128.0 and isinstance(seen["fill"], float) and seen["top_share"] == 0.4
    assert np.allclose(seen["fractions"], np.linspace(0, 1, 6))
    lines = text.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["region", "boom", "random"]
    assert "1 of 3 pairs had no face" in text and str(out) in text
    assert out.is_file() and (tmp_path / "faith_curves.csv").is_file()

    data = _json(capsys, ["faithfulness", str(pairs), "--methods", "region,boom", "--per-label", "1", "--json", "-q"])
    assert [r["method"] for r in data["rows"]] == ["region", "boom", "random"]
    assert data["rows"][1]["deletion_auc"] is None and data["rows"][1]["n_failed"] == 2
    assert len(data["failed_pairs"]) == 0 and data["fractions"][0] == 0.0 and len(data["fractions"]) == 11


@pytest.mark.parametrize("command", [["explain", "a.jpg", "b.jpg"], ["map-stats", "pairs.csv"], ["faithfulness", "pairs.csv"]])
def test_sdd_knobs_reach_the_explainers(command):
    from core.__main__ import _knobs, build_parser

    steps = [] if command[0] == "map-stats" else ["--steps", "7"]
    args = build_parser().parse_args([*command, "--gallery", "g.csv", "--sdd-mode", "verification", "--competitors", "4", *steps])
    knobs = _knobs(args)
    assert knobs["gallery"] == "g.csv" and knobs["sdd_mode"] == "verification" and knobs["competitors"] == 4
    # faithfulness's --steps counts curve points; elsewhere it is the greedy methods' steps
    assert ("steps" in knobs) == (command[0] == "explain")


def test_faithfulness_sets_the_maps_steps_and_fill_under_their_own_flags():
    from core.__main__ import _knobs, build_parser

    args = build_parser().parse_args(["faithfulness", "p.csv", "--steps", "5", "--fill", "white", "--map-steps", "2", "--map-fill", "grey"])
    assert (args.curve_steps, args.fill) == (5, "white")  # the curves' own
    knobs = _knobs(args)
    assert knobs["steps"] == 2 and knobs["fill"] == "grey"  # the maps'
    assert "fill" not in _knobs(build_parser().parse_args(["faithfulness", "p.csv", "--fill", "white"]))


def test_faithfulness_rejects_a_bad_fill(capsys):
    with pytest.raises(SystemExit) as e:
        main(["faithfulness", "pairs.csv", "--fill", "purple"])
    assert e.value.code == 2 and "unknown fill" in capsys.readouterr().err


def test_faithfulness_measures_every_method_by_default(tmp_path, monkeypatch):
    from core.cli import batch as cli
    from core.registry import explainer_names

    seen = {}

    def fake(runner, pairs, images, csv, methods, **kwargs):
        seen.setdefault("methods", []).append(list(methods))
        raise SystemExit(0)

    from types import SimpleNamespace

    from .explainers.test_cam import tiny_sface
    from .explainers.test_vit_verification import tiny_clip_embedder

    cnn = SimpleNamespace(embedder=tiny_sface(0))
    monkeypatch.setattr(cli, "_runner", lambda args: cnn)
    monkeypatch.setattr("core.evaluate.faithfulness.faithfulness", fake)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\na.png,b.png,1\n")
    for extra in ([], ["--gallery", "g.csv"]):
        with pytest.raises(SystemExit):
            main(["faithfulness", str(pairs), "-q", *extra])
    without, with_gallery = seen["methods"]
    vit = ["vit_lrp", "vit_lrp_nograd", "vit_rollout"]
    words = ["concepts", "geometry"]  # no maps to measure
    assert with_gallery == [m for m in explainer_names() if m not in vit + words]  # a CNN cannot run the ViT methods
    assert without == [m for m in with_gallery if not m.startswith("sdd")] and "cam" in without and "xmap3" in without
    monkeypatch.setattr(cli, "_runner", lambda args: SimpleNamespace(embedder=tiny_clip_embedder()))
    with pytest.raises(SystemExit):
        main(["faithfulness", str(pairs), "-q"])
    assert set(vit) <= set(seen["methods"][-1]) and "xmap3" in seen["methods"][-1]


@pytest.mark.needs_data
def test_explain_without_weights_names_them_and_still_measures_the_geometry(capsys):
    from .conftest import MISC

    code = main(["explain", str(MISC / "obama.jpg"), str(MISC / "biden.jpg"), "--model", "cbm_clip_vit_l14", "--methods", "concepts,geometry", "-q"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "open_clip_model.safetensors" in err and "huggingface-cli download laion/CLIP-ViT-L-14-laion2B-s32B-b82K" in err
    assert "Facial proportions (measured)" in out and "eye spacing" in out and "concepts" not in out.split("\n")[0].split(":")[-1]


def test_train_cbm_runs_two_steps_and_saves_a_head(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    from core.models import cbm as C

    from .models.test_cbm import tiny_cbm_embedder

    rng = np.random.default_rng(0)
    for person in ("ann", "bob", "cy"):
        (tmp_path / "faces" / person).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "faces" / person / f"{k}.png")
    monkeypatch.setattr(C, "load_cbm", lambda *a, **k: tiny_cbm_embedder())
    head = tmp_path / "head.pt"
    code = main(["train-cbm", str(tmp_path / "faces"), "--out", str(head), "--aligned", "--max-steps", "2", "--batch-size", "4", "-q"])
    out = capsys.readouterr().out
    assert code == 0 and head.is_file()
    assert "6 faces of 3 people" in out and "2 steps" in out and "verification accuracy" in out
    again = C.load_head(tiny_cbm_embedder().module, head)
    assert not again.zero_shot


def test_train_cbm_without_weights_says_what_to_download(tmp_path, capsys):
    assert main(["train-cbm", str(tmp_path), "--out", str(tmp_path / "h.pt")]) == 2
    assert "laion/CLIP-ViT-L-14-laion2B-s32B-b82K" in capsys.readouterr().err


@pytest.mark.needs_data
def test_train_cxr_command_on_reports_and_xrays(tmp_path, monkeypatch, capsys):
    from core.models import cxr as X

    from .conftest import CXR
    from .models.test_cbm import tiny_clip

    monkeypatch.setattr(X, "load_cxr_clip", lambda source=None: (*tiny_clip(), "tiny"))
    table = tmp_path / "train.csv"
    table.write_text("file,report\n"
                     f"{CXR / '00000001_000.png'},Large left pleural effusion.\n"
                     f"{CXR / 'h0001.png'},The lungs are clear. No pleural effusion.\n"
                     f"{CXR / 'tb0005.png'},Small right pleural effusion and basilar atelectasis.\n")  # fmt: skip
    head = tmp_path / "cxr.pt"
    assert main(["train-cxr", str(table), "--out", str(head), "--max-steps", "2", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 X-rays (2 with an effusion in their report), 2 steps" in out and "ROUGE-L" in out and head.is_file()
    assert main(["cxr", str(CXR / "h0001.png"), "--head", str(head), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert next(iter(data.values()))["mode"] == "supervised"


NASTY = {
    "binary.csv": (b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(200)), "not a text CSV file (binary data at byte 6); save it as CSV UTF-8"),
    "huge.csv": (b"file_x,file_y,same\n" + b"a" * 200_000 + b",b.jpg,1\n", "line 2, column 1 (column 'file_x'): a cell of 200,000 characters"),
    "dup.csv": (b"file_x,file_y,same,same\na.jpg,b.jpg,1,0\n", "the column 'same' appears twice"),
    "header.csv": (b"file_x,file_y,same\n", "has a header but no rows"),
}


@pytest.mark.parametrize("command", ["batch", "eval"])
def test_nasty_csvs_exit_2_with_one_error_line(tmp_path, command, capsys):
    for name, (data, message) in NASTY.items():
        (tmp_path / name).write_bytes(data)
        assert main([command, str(tmp_path / name), "--device", "cpu", "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    proc = subprocess.run([sys.executable, "-m", "core", command, str(tmp_path / "binary.csv"), "-q"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.needs_data
def test_batch_resume_finishes_an_interrupted_run(tmp_path, capsys, monkeypatch):
    from core import batch as batch_mod

    (tmp_path / "pairs.csv").write_text("file_x,file_y,same\nimg5.jpg,img10.jpg,1\nimg5.jpg,img12.jpg,0\nimg10.jpg,img12.jpg,0\n")
    args = ["batch", str(tmp_path / "pairs.csv"), "--images", str(DEEPFACE), "--methods", "", "--device", "cpu", "-q", "--out", str(tmp_path / "out")]
    real = batch_mod.run_batch

    def interrupted(*a, **k):
        def stop(row, res):
            if row.index == 1:
                raise KeyboardInterrupt

        return real(*a, on_pair=stop, **k)

    monkeypatch.setattr(batch_mod, "run_batch", interrupted)
    assert main(args) == 130
    assert "add --resume to run the rest" in capsys.readouterr().err
    monkeypatch.setattr(batch_mod, "run_batch", real)
    assert main([*args, "--resume", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["n_pairs"] == 3 and data["summary"]["n_compared"] == 3
    assert main([*args, "--resume", "--methods", "cam"]) == 2 and "other settings" in capsys.readouterr().err
    assert main([*args[:-2], "--resume"]) == 2 and "--resume needs --out" in capsys.readouterr().err


# -- fetch-weights ---------------------------------------------------------------------------
def _fake_cache(tmp_path, monkeypatch, online: bool = False):
    """An empty Hugging Face cache for this test; ``online``: the Hub mocked, downloads fill it."""
    import huggingface_hub
    from huggingface_hub import constants

    from core.models import weights as W

    from .models.test_cxr_models import REPOS, FakeHub

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("XFV_CXR_CLIP", raising=False)
    fake = FakeHub(cache, {**REPOS, "laion/CLIP-ViT-L-14-laion2B-s32B-b82K": ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]})
    if online:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(W, "hub_unreachable", lambda timeout=5.0: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return cache, fake


def test_fetch_weights_offline_is_one_error_line_listing_the_files(tmp_path, monkeypatch, capsys):
    cache, fake = _fake_cache(tmp_path, monkeypatch)  # HF_HUB_OFFLINE=1, as in every test
    assert main(["fetch-weights", "cxr"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert captured.out == "" and err.startswith("error: ") and err.count("\n") == 1 and fake.calls == []
    for name in ("microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: open_clip_config.json",
                 "open_clip_model.safetensors or open_clip_pytorch_model.bin",
                 "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract: config.json, vocab.txt"):  # fmt: skip
        assert name in err
    assert "on a machine with internet" in err and f"~/.cache/huggingface/hub folder to {cache}" in err


def test_fetch_weights_downloads_every_file_then_the_status_is_ready(tmp_path, monkeypatch, capsys):
    from core.models.cxr import cxr_status

    cache, fake = _fake_cache(tmp_path, monkeypatch, online=True)
    assert main(["fetch-weights", "cxr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cxr: 4 files ready (Hugging Face cache: {cache})") and "open_clip_pytorch_model.bin" in out and "vocab.txt" in out
    assert {c[1] for c in fake.calls} == {
        "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
    }
    assert cxr_status(head="").ready
    assert main(["fetch-weights", "cxr", "--check"]) == 0 and "is ready" in capsys.readouterr().out


def test_fetch_weights_for_the_face_clip_asks_for_its_checkpoint_once(tmp_path, monkeypatch, capsys):
    _, fake = _fake_cache(tmp_path, monkeypatch, online=True)
    assert main(["fetch-weights", "cbm", "clip_vit_l14"]) == 0
    assert fake.calls == [("file", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", "open_clip_model.safetensors", None)]
    heads = [line.split(":")[0] + ":" + line.split(":")[1][:13] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert heads == ["cbm_clip_vit_l14: 1 file ready", "clip_vit_l14: 1 file ready"]


def test_fetch_weights_check_says_what_is_missing(tmp_path, monkeypatch, capsys):
    _fake_cache(tmp_path, monkeypatch)
    assert main(["fetch-weights", "cxr", "clip_vit_l14", "--check"]) == 1
    out = capsys.readouterr().out
    assert "cxr: The chest X-ray model (BiomedCLIP) cannot run" in out and "`python -m core fetch-weights cxr`" in out
    assert "clip_vit_l14: missing laion/CLIP-ViT-L-14-laion2B-s32B-b82K/open_clip_model.safetensors" in out


def test_fetch_weights_clip_is_for_cxr_only(capsys):
    assert main(["fetch-weights", "clip_vit_l14", "--clip", "somewhere"]) == 2
    assert "--clip" in capsys.readouterr().err


def test_the_readme_method_table_is_the_registry_s(capsys):
    """The README's generated table equals ``python -m core methods --markdown`` (regenerate it when this fails)."""
    assert main(["methods", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index("<!-- methods:start -->") + len("<!-- methods:start -->"), readme.index("<!-- methods:end -->")
    assert readme[start:end].strip() == table, "README.md's method table is stale: paste `python -m core methods --markdown` into it"
    data = _json(capsys, ["methods", "--json"])
    xmap = next(r for r in data if r["name"] == "xmap3")
    assert xmap["forward_passes"] == {"full": 2500, "fast": 130} and xmap["requires"] == ["blackbox"]
    sizes = next(k for k in xmap["knobs"] if k["name"] == "patch_sizes")
    assert sizes["low"] == 1 and sizes["high"] == 112 and sizes["default"] == [7, 14, 28] and sizes["help"]
    assert next(r for r in data if r["name"] == "sdd")["needs_gallery"] is True


@pytest.mark.parametrize(
    ("models", "said"),
    [
        ("sface", "give two or more different models"),
        ("sface,sface", "give two or more different models"),
        ("sface,dlib_resnt", "unknown model 'dlib_resnt'; choose from: sface, dlib_resnet"),
    ],
)
def test_explain_models_is_checked_when_the_arguments_are_parsed(models, said, capsys):
    with pytest.raises(SystemExit) as e:
        main(["explain", "a.jpg", "b.jpg", "--models", models])
    assert e.value.code == 2 and said in capsys.readouterr().err


def test_explain_models_refuses_one_models_threshold(capsys):
    assert main(["explain", "a.jpg", "b.jpg", "--models", "sface,dlib_resnet", "--threshold", "0.5"]) == 2
    assert "each model uses its own calibration" in capsys.readouterr().err


@pytest.mark.needs_data
def test_explain_two_models_gives_both_maps_their_correlation_and_a_report(tmp_path, capsys):
    report = tmp_path / "both"
    data = _json(capsys, ["explain", str(MISC / "obama.jpg"), str(MISC / "biden.jpg"), "--models", "sface,dlib_resnet",
                          "--methods", "xmap3", "--preset", "fast", "--report", str(report), "--out", str(tmp_path / "out"),
                          "--json", "-q"])  # fmt: skip
    assert set(data["models"]) == {"sface", "dlib_resnet"} and not any(r["same"] for r in data["models"].values())
    (row,) = data["comparison"]
    assert row["method"] == "xmap3" and row["models"] == ["sface", "dlib_resnet"] and len(row["rank_correlation"]) == 2
    assert all(-1 <= r <= 1 for r in row["rank_correlation"]) and set(row["faithfulness"]) == {"sface", "dlib_resnet"}
    text = report.with_suffix(".html").read_text()
    assert "dlib_resnet" in text and "rank correlation" in text and f"{row['rank_correlation'][0]:+.2f}" in text
    saved = json.loads(report.with_suffix(".json").read_text())
    assert saved["comparison"][0]["rank_correlation"] == row["rank_correlation"] and set(saved["models"]) == {"sface", "dlib_resnet"}
    assert (tmp_path / "out" / "dlib_resnet" / "xmap3_a.png").is_file() and (tmp_path / "out" / "comparison.json").is_file()
