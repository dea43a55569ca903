"""Log lines as entry points configure them: one JSON document per line, written whole, so the processes of a
worker group sharing one stderr (unbuffered, as with PYTHONUNBUFFERED=1 in many images) never interleave lines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from enginekit import REPO

# Run apart: configure() is process-wide (and caches loggers), so it must not touch the test process.
SCRIPT = """
import json, sys

class Recorder:
    def __init__(self):
        self.writes = []
    def write(self, text):
        self.writes.append(text)
        return len(text)
    def flush(self):
        pass
    def isatty(self):
        return False

sys.stderr = recorder = Recorder()
import structlog
from router.ops.logs import configure
configure("auto", "INFO")  # not a terminal: JSON lines
log = structlog.get_logger("test")
log.info("first_event", n=1)
log.debug("filtered_event")
log.warning("second_event", text="two\\nlines")
sys.stdout.write(json.dumps(recorder.writes))
"""


def test_each_log_line_is_one_json_document_in_one_write() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=True)
    writes = json.loads(done.stdout)
    assert len(writes) == 2, writes
    for text in writes:
        assert text.endswith("\n") and text.count("\n") == 1, f"a line written in pieces: {writes}"
    first, second = (json.loads(w) for w in writes)
    assert (first["event"], first["n"], first["level"]) == ("first_event", 1, "info")
    assert (second["event"], second["text"], second["level"]) == ("second_event", "two\nlines", "warning")
    assert "timestamp" in first


CHILD = textwrap.dedent(
    """
    import multiprocessing, structlog
    from router.ops.logs import configure

    def spam(n):
        configure("json", "INFO")
        log = structlog.get_logger("t")
        for i in range(300):
            log.info("line", process=n, i=i, filler="x" * 200)

    if __name__ == "__main__":
        procs = [multiprocessing.get_context("fork").Process(target=spam, args=(n,)) for n in range(4)]
        for p in procs: p.start()
        for p in procs: p.join()
    """
)


def test_concurrent_processes_never_interleave_a_json_line() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    lines = done.stderr.splitlines()
    assert len(lines) == 4 * 300
    docs = [json.loads(line) for line in lines]  # a line written in two pieces would not parse
    assert {(d["process"], d["i"]) for d in docs} == {(n, i) for n in range(4) for i in range(300)}
