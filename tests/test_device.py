"""``core.device``: the CPU allocator setting of the entry points."""

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize(("env", "want"), [({}, "True"), ({"XFV_NO_MALLOPT": "1"}, "False")])
def test_the_allocator_is_tuned_once_per_process_unless_turned_off(env, want):
    import os

    code = "from core.device import tune_cpu_allocator as t; print(t(), t())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120, check=True)
    assert out.stdout.split() == [want, want]
