"""Cache-aside and write-through over Redis or DynamoDB, with stampede protection.

Entries are JSON envelopes `{"v": schema, "fresh": until, "d": data}`: a reader that expects
another schema version treats the entry as a miss, so a deploy that changes a model never
crashes on what the previous one cached. An entry is served while fresh and kept a little
longer (the stale grace) so that, while one caller reloads it, the others can serve the old
value instead of stampeding the source. A backend outage is a miss, never an error.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tarefa.breaker import BackendUnavailableError
from tarefa.ports import CacheBackend

metrics = Metrics()

T = TypeVar("T")

# Seconds each key family stays fresh (seeds 001 and 004); TAREFA_CACHE_TTLS overrides them.
DEFAULT_TTLS: dict[str, int] = {
    "session": 30 * 60,
    "phone": 5 * 60,
    "user": 60 * 60,
    "event": 30 * 60,
    "guest": 10 * 60,
    "job": 60 * 60,  # finished jobs never change; the hour bounds memory, not staleness
}


def cache_family(name: str, ttl_seconds: int) -> str:
    """Declare a workload's key family and how long its entries stay fresh (at import, beside
    its job types); TAREFA_CACHE_TTLS still overrides it. Returns the name."""
    if not name or ":" in name:
        raise ValueError(f"cache family {name!r}: a non-empty name without ':'")
    if ttl_seconds < 1:
        raise ValueError(f"cache family {name!r}: ttl_seconds must be at least 1")
    if DEFAULT_TTLS.get(name, ttl_seconds) != ttl_seconds:
        raise ValueError(f"cache family {name!r} is already declared with {DEFAULT_TTLS[name]} s")
    DEFAULT_TTLS[name] = ttl_seconds
    return name


MAX_STALE_GRACE_SECONDS = 300
LOCK_SECONDS = 10.0  # a loader that takes longer loses its lock; a second loader may start
WAIT_SECONDS = 2.0  # how long a caller waits for another's load before loading itself


class TtlTable:
    def __init__(self, overrides: Mapping[str, int] | None = None) -> None:
        self.ttls = {**DEFAULT_TTLS, **(overrides or {})}

    def __getitem__(self, family: str) -> int:
        try:
            return self.ttls[family]
        except KeyError:
            raise ValueError(f"unknown cache key family {family!r}; known: {sorted(self.ttls)}") from None


@dataclass(frozen=True)
class Lookup(Generic[T]):
    value: T
    hit: bool  # served from the cache (fresh or, while another caller reloads, stale)


@dataclass
class CacheStats:
    """What this process saw; CloudWatch gets the same as CacheHits/CacheMisses metrics."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
        metrics.add_metric("CacheHits" if hit else "CacheMisses", MetricUnit.Count, 1)

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return round(self.hits / total, 4) if total else None


@dataclass(frozen=True)
class _Entry:
    data: Any
    fresh: bool


def _identity(value: Any) -> Any:
    return value


def _is_not_none(value: Any) -> bool:
    return value is not None


class Cache:
    def __init__(
        self,
        backend: CacheBackend,
        ttls: TtlTable | None = None,
        prefix: str = "tarefa:",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self.ttls = ttls or TtlTable()
        self.prefix = prefix
        self.clock = clock
        self.sleep = sleep
        self.stats = CacheStats()

    def key(self, family: str, key: str) -> str:
        return f"{self.prefix}{family}:{key}"

    # -- plain operations ------------------------------------------------------------------
    def get(self, family: str, key: str, schema: int = 1) -> Any | None:
        entry = self._read(family, key, schema)
        hit = entry is not None and entry.fresh
        self.stats.count(hit)
        return entry.data if entry is not None and hit else None

    def lifetime(self, family: str) -> int:
        """Seconds an entry of `family` may exist: its TTL plus the stale grace."""
        ttl = self.ttls[family]
        return ttl + min(ttl, MAX_STALE_GRACE_SECONDS)

    def set(self, family: str, key: str, value: Any, schema: int = 1) -> None:
        fresh_until = self.clock() + self.ttls[family]
        envelope = json.dumps({"v": schema, "fresh": fresh_until, "d": value}, separators=(",", ":"))
        try:
            self.backend.set(self.key(family, key), envelope, self.lifetime(family))
        except BackendUnavailableError:
            self.stats.error()

    def delete(self, family: str, *keys: str) -> None:
        try:
            self.backend.delete([self.key(family, key) for key in keys])
        except BackendUnavailableError:
            self.stats.error()

    def invalidate_prefix(self, family: str, key_prefix: str = "") -> int:
        """Delete every entry of `family` whose key starts with `key_prefix` (all when empty)."""
        try:
            return self.backend.delete_prefix(self.key(family, key_prefix))
        except BackendUnavailableError:
            self.stats.error()
            return 0

    # -- cache-aside -----------------------------------------------------------------------
    def lookup(
        self,
        family: str,
        key: str,
        loader: Callable[[], T],
        schema: int = 1,
        encode: Callable[[T], Any] = _identity,
        decode: Callable[[Any], T] = _identity,
        cacheable: Callable[[T], bool] = _is_not_none,
        protect: bool = True,
    ) -> Lookup[T]:
        """The cached value, else `loader()` (stored when `cacheable`). With `protect`, one
        caller per key loads at a time; the others serve the stale value or wait briefly for
        the fresh one. Without it a miss costs no lock: for cheap loaders of values that are
        rarely cacheable."""
        entry = self._read(family, key, schema, decode)
        if entry is not None and entry.fresh:
            self.stats.count(True)
            return Lookup(entry.data, hit=True)
        if not protect:
            self.stats.count(False)
            return Lookup(self._load(family, key, loader, schema, encode, cacheable), hit=False)
        lock_key, token = self.key(family, key) + ":lock", secrets.token_hex(8)
        if self._lock(lock_key, token):
            self.stats.count(False)
            try:
                return Lookup(self._load(family, key, loader, schema, encode, cacheable), hit=False)
            finally:
                self._unlock(lock_key, token)
        if entry is not None:  # someone else is reloading it: the stale value will do
            self.stats.count(True)
            return Lookup(entry.data, hit=True)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            self.sleep(0.02)
            entry = self._read(family, key, schema, decode)
            if entry is not None and entry.fresh:
                self.stats.count(True)
                return Lookup(entry.data, hit=True)
        self.stats.count(False)  # the other loader is slow or gone: never fail the caller
        return Lookup(self._load(family, key, loader, schema, encode, cacheable), hit=False)

    def get_or_load(self, family: str, key: str, loader: Callable[[], T], schema: int = 1) -> T:
        return self.lookup(family, key, loader, schema).value

    def write_through(
        self, family: str, key: str, value: Any, save: Callable[[Any], None], schema: int = 1
    ) -> None:
        """Write to the source of truth first, then the cache: a failed save caches nothing."""
        save(value)
        self.set(family, key, value, schema)

    # -- internals -------------------------------------------------------------------------
    def _load(
        self,
        family: str,
        key: str,
        loader: Callable[[], T],
        schema: int,
        encode: Callable[[T], Any],
        cacheable: Callable[[T], bool],
    ) -> T:
        value = loader()
        if cacheable(value):
            self.set(family, key, encode(value), schema)
        return value

    def _read(
        self, family: str, key: str, schema: int, decode: Callable[[Any], Any] = _identity
    ) -> _Entry | None:
        try:
            raw = self.backend.get(self.key(family, key))
        except BackendUnavailableError:
            self.stats.error()
            return None
        if raw is None:
            return None
        try:
            envelope = json.loads(raw)
            if envelope.get("v") != schema:
                return None  # written by another version of the model
            return _Entry(decode(envelope["d"]), fresh=self.clock() < float(envelope["fresh"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None  # not ours, or a model that no longer validates: reload it

    def _lock(self, key: str, token: str) -> bool:
        try:
            return self.backend.add(key, token, LOCK_SECONDS)
        except BackendUnavailableError:
            self.stats.error()
            return True  # no backend, no stampede protection: load, and do not fail

    def _unlock(self, key: str, token: str) -> None:
        try:
            self.backend.release(key, token)
        except BackendUnavailableError:
            self.stats.error()
