"""``router demo`` on the example fleet: every task reaches its owner, a cron entry fires and is handled by its
owner, and the status it prints shows the scheduler and each entry's next fire; all within about ten seconds."""

from __future__ import annotations

import os

from regkit import EXAMPLE

from router.ops.demo import run_demo


def test_demo_shows_routing_a_cron_fire_and_the_schedulers_status() -> None:
    said: list[str] = []
    cwd = os.getcwd()
    os.chdir(EXAMPLE.parent)  # the workers import the example services' code from here, as `router demo` users do
    try:
        result = run_demo(str(EXAMPLE), per_type=5, say=said.append, timeout_s=20)
    finally:
        os.chdir(cwd)
    text = "\n".join(said)
    assert result.misrouted == 0 and result.unfinished == 0 and result.enqueued == 30, text
    assert result.cron == ("reports-live-export", "reports", "reports"), text
    assert result.seconds < 12, text
    assert "1 live scheduler(s)" in [line.strip() for line in said], text
    nightly = next(line for line in said if line.startswith("reports-nightly-digest"))
    assert "Europe/Paris" in nightly and "T02:00:00+0" in nightly, nightly
    live = next(line for line in said if line.startswith("reports-live-export"))
    assert live.split()[-1] == "1" and ":" in live.split()[-2], live  # one scheduler fires it; a next fire time
