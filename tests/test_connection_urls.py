"""Redis URL handling without a server: Sentinel URLs (several hosts, credentials, db, TLS, errors), the scheme
tests, and passwords kept out of messages."""

from __future__ import annotations

import pytest

from router.redisurl import SentinelTarget, is_cluster_url, is_sentinel_url, parse_sentinel_url, redact


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://10.0.0.1:26379/mymaster",
     SentinelTarget((("10.0.0.1", 26379),), "mymaster", 0, None, None, False)),
    ("redis+sentinel://s1:26379,s2:26380,s3.example.com:26381/mymaster/3",
     SentinelTarget((("s1", 26379), ("s2", 26380), ("s3.example.com", 26381)), "mymaster", 3, None, None, False)),
    ("redis+sentinel://app:s3cret@s1:26379,s2:26379/prod",
     SentinelTarget((("s1", 26379), ("s2", 26379)), "prod", 0, "app", "s3cret", False)),
    ("redis+sentinel://:only-a-password@s1:26379/prod/1",
     SentinelTarget((("s1", 26379),), "prod", 1, None, "only-a-password", False)),
    # URL-encoded credentials are decoded: '@', ':', '/', ',' and '%' may all appear in a password.
    ("redis+sentinel://us%40er:p%40ss%3Aw%2Fo%2Crd%25@s1:26379/prod",
     SentinelTarget((("s1", 26379),), "prod", 0, "us@er", "p@ss:w/o,rd%", False)),
    ("rediss+sentinel://app:pw@[::1]:26379,[fe80::2]:26380/secure/2",
     SentinelTarget((("::1", 26379), ("fe80::2", 26380)), "secure", 2, "app", "pw", True)),
])
def test_sentinel_urls_parse(url: str, expected: SentinelTarget) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(("url", "names"), [
    ("redis+sentinel://s1:26379", "master-name"),               # no master name
    ("redis+sentinel://s1:26379/", "master-name"),
    ("redis+sentinel:///mymaster", "master-name"),              # no Sentinel at all
    ("redis+sentinel://s1/mymaster", "'s1'"),                   # no port
    ("redis+sentinel://s1:26379,s2:port/mymaster", "'s2:port'"),
    ("redis+sentinel://s1:26379,/mymaster", "''"),              # an empty address in the list
    ("redis+sentinel://:26379/mymaster", "':26379'"),           # no host
    ("redis+sentinel://s1:26379/mymaster/zero", "db"),          # a db that is not a number is refused, not ignored
    ("redis+sentinel://s1:26379/mymaster/0/extra", "mymaster/0/extra"),  # nothing after the db
    ("redis+sentinel://s1:99999/mymaster", "'s1:99999'"),       # a port out of range
])
def test_bad_sentinel_urls_say_what_the_url_should_look_like(url: str, names: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_sentinel_url(url)
    message = str(err.value)
    assert names in message
    assert "redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]" in message


def test_scheme_tests() -> None:
    assert is_sentinel_url("redis+sentinel://s:1/m") and is_sentinel_url("rediss+sentinel://s:1/m")
    assert is_cluster_url("redis+cluster://h:1") and is_cluster_url("rediss+cluster://h:1")
    for plain in ("redis://h:1/0", "rediss://h:1/0", "unix:///tmp/redis.sock"):
        assert not is_sentinel_url(plain) and not is_cluster_url(plain)
    assert not is_cluster_url("redis+sentinel://s:1/m") and not is_sentinel_url("redis+cluster://h:1")


def test_passwords_are_redacted_from_messages() -> None:
    assert redact("redis://user:hunter2@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact("redis://:hunter2@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    assert "hunter2" not in redact("redis+sentinel://app:hunter2@s1:26379,s2:26379/prod")
