"""``router scheduler`` as a user runs it, and ``router status`` showing it: signals, every option, exit codes, and
a Redis outage waited out by the loop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from enginekit import REPO, WorkerProcess, qk, sk, subprocess_env, wait_for
from schedkit import cron_registry, entry, queue_ids, start_scheduler, write_cron_yaml

from router.errors import BrokerError
from router.ops.localredis import RedisServer
from router.scheduler import Scheduler, SchedulerSettings, launch
from router.scheduler.cron import CronSchedule

EVERY_SECOND = {"name": "every-second", "task": "svc.tick", "spec": "* * * * * *", "payload": {"n": 1}}


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        p.kill()


def router_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def claim_s(client: Any, name: str = "every-second", queue: str = "default") -> int:
    """The entry's claimed fire time in seconds (0 when none)."""
    raw = client.get(qk(cron_registry("redis://x"), "svc", queue).cron(name))
    return int(raw) // 1000 if raw else 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_scheduler_fires_then_stops_cleanly_on_a_signal(redis_url: str, redis_client: Any, tmp_path: Path,
                                                        procs: list[WorkerProcess], sig: int) -> None:
    """It fires each second, publishes its heartbeat with a TTL of three --heartbeat-s, and on SIGTERM or SIGINT
    logs signal_received, withdraws the heartbeat and exits 0."""
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [EVERY_SECOND])
    p = start_scheduler(path, redis_url, "--heartbeat-s", "0.5")
    procs.append(p)
    wait_for(lambda: len(p.find("cron_fired")) >= 2, 20, "two fires")
    index = sk(cron_registry(redis_url), "svc").schedulers
    (member,) = redis_client.zrange(index, 0, -1)
    heartbeat = sk(cron_registry(redis_url), "svc").scheduler(member.decode())
    assert 0 < redis_client.pttl(heartbeat) <= 1500  # 3 x --heartbeat-s
    p.signal(sig)
    assert p.wait(20) == 0, p.log_tail()
    (received,) = p.find("signal_received")
    assert received["signal"] == signal.Signals(sig).name
    assert p.find("scheduler_stopped")[0]["fired"] >= 2
    assert redis_client.zcard(index) == 0 and not redis_client.exists(heartbeat)
    q = qk(cron_registry(redis_url), "svc")
    fired = sorted(queue_ids(redis_client, q))
    assert len(fired) == len(set(fired)) == p.find("scheduler_stopped")[0]["fired"]


def test_sigtstp_quiets_the_scheduler_until_sigterm(redis_url: str, redis_client: Any, tmp_path: Path,
                                                   procs: list[WorkerProcess]) -> None:
    """After SIGTSTP it fires nothing more but keeps a heartbeat marked quiet; SIGTERM then stops it."""
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [EVERY_SECOND])
    p = start_scheduler(path, redis_url, "--heartbeat-s", "0.3")
    procs.append(p)
    wait_for(lambda: p.find("cron_fired"), 20, "a fire")
    p.signal(signal.SIGTSTP)
    wait_for(lambda: p.find("signal_received"), 10, "SIGTSTP logged")
    fired_then = len(p.find("cron_fired"))
    index = sk(cron_registry(redis_url), "svc").schedulers

    def heartbeat() -> dict[str, Any]:
        (member,) = redis_client.zrange(index, 0, -1)
        raw = redis_client.get(sk(cron_registry(redis_url), "svc").scheduler(member.decode()))
        return json.loads(raw) if raw else {}

    quiet_since = wait_for(lambda: heartbeat().get("quiet") and heartbeat()["at_ms"], 10, "a quiet heartbeat")
    wait_for(lambda: heartbeat()["at_ms"] >= quiet_since + 2500, 10, "2.5 s of quiet heartbeats")
    assert len(p.find("cron_fired")) == fired_then  # nothing fired while quiet
    assert claim_s(redis_client) * 1000 < quiet_since
    p.signal(signal.SIGTERM)
    assert p.wait(20) == 0, p.log_tail()
    assert [e["signal"] for e in p.find("signal_received")] == ["SIGTSTP", "SIGTERM"]


def test_once_catches_up_within_the_window_and_exits(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    """--once fires what the entries' policies say is due (here: every missed minute, catch_up all) and exits 0;
    --catch-up-window-s bounds how far back it looks."""
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [
        {"name": "minutely", "task": "svc.tick", "spec": "* * * * *", "payload": {"n": 1}, "catch_up": "all"}])
    minutely = CronSchedule("* * * * *", "UTC")
    q = qk(cron_registry(redis_url), "svc")
    for window_s in (86400, 150):
        redis_client.flushall()
        started = int(time.time())
        last = minutely.latest(started, 120)
        assert last is not None
        redis_client.set(q.cron("minutely"), (last - 600) * 1000)  # as if every scheduler stopped 10 minutes ago
        done = router_cli("scheduler", "-r", str(path), "--url", redis_url, "--once", "--catch-up-window-s",
                          str(window_s), "--log-format", "json")
        assert done.returncode == 0, done.stderr
        ended = int(time.time())
        fired = sorted(int(i.split(":")[-1]) // 1000 for i in queue_ids(redis_client, q))
        assert fired and fired == minutely.fires(fired[0] - 1, fired[-1], 1000), fired  # consecutive minutes
        assert last <= fired[-1] <= ended  # up to the slot due when it ran
        if window_s == 86400:
            assert fired[0] == last - 540 and len(fired) in (10, 11)  # every minute since the claim
        else:
            assert fired[0] > started - window_s - 2 and len(fired) in (2, 3)  # only the last 150 s
        once = [json.loads(line) for line in done.stderr.splitlines() if '"scheduler_once"' in line]
        assert once[0]["fired"] == len(fired) and once[0]["entries"] == ["minutely"]


def test_service_option_limits_the_entries_and_an_unknown_service_exits_2(redis_url: str, redis_client: Any,
                                                                         tmp_path: Path) -> None:
    """--service picks the entries whose task that service owns; a service the registry lacks is a usage error."""
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [EVERY_SECOND])
    text = path.read_text().replace("services:\n", "services:\n  other:\n    tasks:\n      other.job: {}\n", 1)
    path.write_text(text + "- {name: other-entry, task: other.job, spec: '* * * * * *'}\n")
    for service, expected in (("svc", ["every-second"]), ("other", ["other-entry"])):
        done = router_cli("scheduler", "-r", str(path), "--url", redis_url, "--once", "--service", service,
                          "--log-format", "json")
        assert done.returncode == 0, done.stderr
        once = [json.loads(line) for line in done.stderr.splitlines() if '"scheduler_once"' in line]
        assert once[0]["entries"] == expected
    done = router_cli("scheduler", "-r", str(path), "--url", redis_url, "--once", "--service", "nope")
    assert done.returncode == 2 and "no service 'nope' in the registry" in done.stderr


def test_invalid_registry_exits_1_and_refused_credentials_exit_4(redis_url: str, tmp_path: Path) -> None:
    """A seconds-first spec makes the registry invalid (exit 1, located); a wrong password is not waited out
    (exit 4), in the long-running mode too."""
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [{**EVERY_SECOND, "spec": "*/30 * * * * *"}])
    done = router_cli("scheduler", "-r", str(path), "--url", redis_url)
    assert done.returncode == 1 and "services.yaml:" in done.stderr and "seconds and comes LAST" in done.stderr
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [EVERY_SECOND])
    with RedisServer() as locked:
        admin = locked.client()
        admin.config_set("requirepass", "s3cret")  # after start: the readiness check pings without one
        admin.close()
        done = router_cli("scheduler", "-r", str(path), "--url", f"redis://:wrong@127.0.0.1:{locked.port}/0",
                          timeout_s=30)
    assert done.returncode == 4 and "credentials" in done.stderr, done.stderr


def test_once_gives_up_on_an_unreachable_redis_with_a_broker_error(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """--once waits for Redis a bounded time (10 s; shortened here), then fails naming the URL (exit code 4)."""
    monkeypatch.setattr(launch, "ONCE_CONNECT_WAIT_S", 0.3)
    url = "redis://127.0.0.1:1/0"
    path = write_cron_yaml(tmp_path / "services.yaml", url, [EVERY_SECOND])
    with pytest.raises(BrokerError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0"):
        launch.run_scheduler(launch.SchedulerCommand(str(path), once=True))


def test_status_shows_schedulers_next_fires_and_a_backlog_without_worker(redis_url: str, tmp_path: Path,
                                                                          procs: list[WorkerProcess]) -> None:
    """router status, text and JSON: the live scheduler, each entry's last and next fire, and "backlog, no worker"
    for the queue the entry fills while no worker reads it."""
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [
        EVERY_SECOND, {"name": "nightly", "task": "svc.alert", "spec": "30 2 * * *", "timezone": "Europe/Paris",
                       "payload": {"n": 2}}])
    p = start_scheduler(path, redis_url, "--heartbeat-s", "0.5")
    procs.append(p)
    wait_for(lambda: p.find("cron_fired"), 20, "a fire")
    done = router_cli("status", "-r", str(path), "--url", redis_url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("svc") and "default" in line and line.endswith("(backlog, no worker)")
               for line in lines), done.stdout
    assert not any("critical" in line and "backlog" in line for line in lines)  # nothing pending there
    assert "1 live scheduler(s)" in lines
    nightly = next(line for line in lines if line.startswith("nightly"))
    assert "Europe/Paris" in nightly and "T02:30:00+0" in nightly and nightly.split()[-1] == "1"
    done = router_cli("status", "-r", str(path), "--url", redis_url, "--format", "json")
    doc = json.loads(done.stdout)
    assert [s["pid"] for s in doc["schedulers"]] == [p.pid]
    cron = {c["name"]: c for c in doc["cron"]}
    assert cron["every-second"]["last_fire_ms"] >= 1000 and cron["every-second"]["next_fire_ms"] > 0
    assert cron["nightly"]["last_fire_ms"] is None and cron["nightly"]["schedulers"] == 1
    assert next(q for q in doc["queues"] if q["queue"] == "default")["backlog_no_worker"] is True


def test_a_redis_outage_is_waited_out_and_the_slots_it_hid_fire_once(fresh_redis_server: RedisServer) -> None:
    """Redis is killed and started again under a running scheduler: it logs redis_unavailable, backs off, logs
    redis_available, and the slots due meanwhile (on time: within the grace) fire once each: no gap, no repeat."""
    server = fresh_redis_server
    registry = cron_registry(server.url, entry("every-second", "* * * * * *"))
    scheduler = Scheduler(registry, url=server.url, settings=SchedulerSettings(heartbeat_s=0.5))
    client = server.client()
    with structlog.testing.capture_logs() as logs:
        thread = threading.Thread(target=scheduler.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: claim_s(client), 10, "a first fire")
            server.kill()
            killed = int(time.time())
            wait_for(lambda: any(e["event"] == "redis_unavailable" for e in logs), 10, "redis_unavailable")
            server.start()
            wait_for(lambda: any(e["event"] == "redis_available" for e in logs), 20, "redis_available")
            back = int(time.time())
            client = server.client()
            wait_for(lambda: claim_s(client) >= back + 2, 10, "fires after the outage")
        finally:
            scheduler.stop()
            thread.join(10)
            scheduler.close()
    assert not thread.is_alive()
    fired = sorted(int(i.split(":")[-1]) // 1000 for i in queue_ids(client, qk(registry, "svc")).elements())
    assert fired == list(range(fired[0], fired[-1] + 1))  # every second once: none lost to the outage, none twice
    assert fired[0] <= killed and fired[-1] >= back + 2
    outage = next(e for e in logs if e["event"] == "redis_available")["outage_s"]
    assert outage > 0
    client.close()


def test_log_level_filters_the_scheduler_events(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    """--log-level WARNING keeps no_live_worker (a warning) and drops cron_fired and scheduler_once (info)."""
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [
        {"name": "minutely", "task": "svc.tick", "spec": "* * * * *", "payload": {"n": 1}, "catch_up": "latest"}])
    q = qk(cron_registry(redis_url), "svc")
    redis_client.set(q.cron("minutely"), (int(time.time()) - 600) * 1000)  # ten minutes behind: one fire due
    done = router_cli("scheduler", "-r", str(path), "--url", redis_url, "--once", "--log-format", "json",
                      "--log-level", "WARNING")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["event"] for line in done.stderr.splitlines() if line.startswith("{")]
    assert events == ["no_live_worker"], done.stderr
    assert len(queue_ids(redis_client, q)) == 1


def test_router_registry_and_router_redis_url_stand_in_for_the_options(redis_url: str, redis_client: Any,
                                                                      tmp_path: Path) -> None:
    """Without --registry and --url the scheduler reads ROUTER_REGISTRY and ROUTER_REDIS_URL (the registry's own
    redis.url is a port nothing listens on: only ROUTER_REDIS_URL can make this fire)."""
    path = write_cron_yaml(tmp_path / "services.yaml", "redis://127.0.0.1:1/0", [EVERY_SECOND])
    q = qk(cron_registry(redis_url), "svc")
    redis_client.set(q.cron("every-second"), (int(time.time()) - 5) * 1000)  # claimed 5 s ago: one slot is due
    env = {**subprocess_env(), "ROUTER_REGISTRY": str(path), "ROUTER_REDIS_URL": redis_url}
    done = subprocess.run([sys.executable, "-m", "router", "scheduler", "--once", "--log-format", "json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert sum(queue_ids(redis_client, q).values()) >= 1
