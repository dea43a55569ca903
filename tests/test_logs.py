"""Log lines of the processes of a worker group share one stderr: each must arrive whole."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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
