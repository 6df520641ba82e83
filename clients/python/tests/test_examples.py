"""The Python examples run as a user would run them, against this build's ctxd."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, ctxd_bin


def test_langgraph_agent_example_resumes_after_its_leader_is_killed():
    env = dict(os.environ, CTXD_BIN=str(ctxd_bin()))
    r = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "langgraph_agent.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "killed node" in r.stdout and "resumed on the surviving nodes" in r.stdout
    assert r.stdout.rstrip().endswith("checkpoints in the thread's history")
