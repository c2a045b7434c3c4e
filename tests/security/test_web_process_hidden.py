"""A web process keeps its environment (SECRET_KEY, DATABASE_URL) from task runs that share its uid."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# prctl(PR_GET_DUMPABLE): 1 while /proc/<pid>/environ is readable by the same uid, 0 once hidden.
PROBE = (
    "import ctypes, importlib, sys; sys.path.insert(0, {root!r}); {load}"
    "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"
)


@pytest.mark.parametrize("entry_point", ["anchor_site.asgi", "anchor_site.wsgi"])
def test_the_web_entry_points_make_the_process_non_dumpable(entry_point):
    def dumpable(load: str) -> str:
        done = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), load=load)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "DEBUG": "1"})
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert dumpable("") == "1"  # the control: a plain Python process is dumpable
    assert dumpable(f"importlib.import_module({entry_point!r}); ") == "0"
