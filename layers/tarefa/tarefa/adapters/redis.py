"""The cache backend on Redis (ElastiCache Serverless, Valkey or Redis OSS).

Timeouts are short on purpose: the cache is an optimisation, and the breaker in front of this
adapter stops calls altogether while the server is down. Prefix deletion walks SCAN, never KEYS.
The sliding window is one Lua script over a sorted set: exact, atomic, one round trip.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis

from tarefa.ports import WindowCount

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] window; ARGV: limit, window seconds, now (epoch seconds), member, cost (hits, each
# its own member: ARGV[4] for the first, ARGV[4]:n for the others).
_HIT_WINDOW = """
local limit, window, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[5] or '1')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count + cost <= limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  for n = 2, cost do
    redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. n)
  end
  count = count + cost
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {allowed, count, oldest[2] or false}
"""

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
DELETE_CHUNK = 500


class _Credentials(redis.CredentialProvider):
    """AUTH credentials fetched when a connection opens, never at import or cold start."""

    def __init__(self, username: str, password: Callable[[], str]) -> None:
        self.username = username
        self.password = password

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        return (self.username, self.password()) if self.username else (self.password(),)


def connect(
    url: str, username: str = "", password: Callable[[], str] | None = None, cluster: bool = False
) -> Any:
    """A client with timeouts short enough that an outage costs milliseconds, not seconds."""
    options: dict[str, Any] = {
        "socket_timeout": 0.25,
        "socket_connect_timeout": 0.25,
        "decode_responses": True,
    }
    if password is not None:
        options["credential_provider"] = _Credentials(username, password)
    elif username:
        options["username"] = username
    if cluster:
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, health_check_interval=30, retry_on_timeout=False, **options)


class RedisCacheBackend:
    name = "redis"

    def __init__(self, client: Any) -> None:
        self.client = client
        self._release = client.register_script(_RELEASE)
        self._hit_window = client.register_script(_HIT_WINDOW)

    def get(self, key: str) -> str | None:
        value = self.client.get(key)
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        self.client.set(key, value, px=max(1, int(ttl_seconds * 1000)))

    def add(self, key: str, value: str, ttl_seconds: float) -> bool:
        return bool(self.client.set(key, value, px=max(1, int(ttl_seconds * 1000)), nx=True))

    def release(self, key: str, value: str) -> None:
        self._release(keys=[key], args=[value])

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), DELETE_CHUNK):
            self.client.unlink(*keys[start : start + DELETE_CHUNK])

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[str] = []
        for key in self.client.scan_iter(match=_GLOB_SPECIAL.sub(r"\\\1", prefix) + "*", count=500):
            batch.append(key)
            if len(batch) >= DELETE_CHUNK:
                deleted += int(self.client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(self.client.unlink(*batch))
        return deleted

    def hit_window(
        self, key: str, limit: int, window_seconds: float, now: float, cost: int = 1
    ) -> WindowCount:
        allowed, count, oldest = self._hit_window(
            keys=[key], args=[limit, window_seconds, repr(now), f"{now!r}:{uuid.uuid4().hex}", cost]
        )
        return WindowCount(bool(allowed), int(count), float(oldest) if oldest is not None else None)

    def ping(self) -> None:
        self.client.ping()
