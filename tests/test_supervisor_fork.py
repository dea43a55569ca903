"""A worker group's children never run the parent's signal handler: a signal that reaches a child before it has
reset its handlers takes its default action (for SIGTERM: the child ends), instead of the parent's ``forward``
acting on a copy of the parent's children (which printed ``AssertionError: can only test a child process``
tracebacks and swallowed the signal)."""

from __future__ import annotations

import subprocess
import sys

from enginekit import REPO

# Each child sends itself SIGTERM while it is being forked: the earliest a signal can reach it.
SCRIPT = """
import os, signal, sys
from router.worker.supervisor import run_group
os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))

def target():
    print("target ran", flush=True)
    return 0

sys.exit(run_group(2, target))
"""


def test_a_signal_during_the_fork_takes_its_default_action_in_the_child() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    out = done.stdout + done.stderr
    assert "target ran" not in out, "a child swallowed the SIGTERM and ran its worker"
    assert "Traceback" not in out and "can only test a child process" not in out
    # Every child ends by SIGTERM, which the group counts as a crash: it restarts them, then gives up.
    assert done.returncode == 1, out
    assert out.count("worker_process_died") == 6 and "exitcode=-15" in out, out
