"""`make demo` runs `python app.py`: it must serve the page on the loopback address."""

import urllib.request

import pytest


@pytest.mark.slow
def test_app_serves_the_page_on_loopback_and_removes_its_uploads_folder(tmp_path):
    from benchmarks.load_app import LocalServer

    # the app's own defaults: no server name (so 127.0.0.1), no upload folder (so a private one)
    server = LocalServer(env={"GRADIO_SERVER_NAME": None, "GRADIO_TEMP_DIR": None, "TMPDIR": str(tmp_path)})
    try:
        server.wait(120)
        with urllib.request.urlopen(server.url, timeout=5) as r:
            assert "<html" in r.read().decode("utf-8", "replace").lower()
        with urllib.request.urlopen(f"{server.url}config", timeout=5) as r:
            config = r.read().decode()
        assert "Explainable face verification" in config and "Compare" in config
        assert [p.name.startswith("xfv-uploads-") for p in tmp_path.iterdir()] == [True]  # uploads go to a private folder
        server.proc.terminate()  # SIGTERM: a normal exit, the folder is removed
        server.proc.wait(timeout=30)
        assert not any(tmp_path.iterdir()), f"left behind: {list(tmp_path.iterdir())}"
    finally:
        server.stop()
