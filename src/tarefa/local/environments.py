"""Execution environments for the local HTTP API, as Lambda keeps them: several per function,
each a copy of the function's module of its own, each serving one request at a time.

A Powertools resolver holds the event it is serving (`app.current_event`), so one module copy
must never serve two requests at once; copies let requests run side by side instead of in turn.
Powertools keeps that event on a class, though, one per process (`BaseRouter.current_event`,
which every resolver and router reads): `isolate_router_state` gives each thread its own, as
each Lambda environment has its own process.
"""

from __future__ import annotations

import threading
import time
from abc import ABCMeta
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tarefa.local.provision import Function
from tarefa.local.runtime import Handler

# What `tarefa local` runs per function unless told (--api-concurrency). The machine's two cores
# are shared by the API, the workers and the emulator (the ceiling: one core of moto). On bursts
# of 16 clients, 4 environments enqueued 28-33 jobs/s with the workers keeping up (every job done
# 0.4 s after the last enqueue); 16 enqueued 35-42 jobs/s but left the workers 2 s behind (5 s
# after a crowd of 500): the same jobs done in the same time, the API served first, and more
# module copies. 1 environment enqueued about 10 % less; 2 and 8 as 4. See docs/local-concurrency.md.
DEFAULT_API_CONCURRENCY = 4

# API Gateway gives an integration at most 30 s, queueing included; then it answers 503.
INTEGRATION_TIMEOUT_SECONDS = 30.0


class NoEnvironmentError(Exception):
    """No environment came free within the integration timeout."""


@dataclass(frozen=True)
class Lease:
    """One environment checked out for one request."""

    handler: Handler
    number: int  # 1..size: which environment, for logs and tests
    waited_seconds: float  # 0 when one was free on arrival


class _Waiter:
    """A request waiting for an environment: handed one directly when one comes free."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.environment: tuple[int, Handler] | None = None


class EnvironmentPool:
    """A function's execution environments. A request takes a free one or waits for one to
    come free, first come first served: a freed environment goes straight to the request that
    has waited longest, so a crowd cannot starve anyone (Lambda would throttle past the
    function's reserved concurrency; a local stack that queues is slower under a crowd, never
    wrong)."""

    def __init__(self, function: Function, size: int, load: Callable[[Function], Handler]) -> None:
        """`load` makes one environment (LocalApp.new_handler); all `size` are made here, before
        the first request, so that no request pays a cold start or races one."""
        if size < 1:
            raise ValueError("an environment pool needs at least one environment")
        self.function = function
        self.size = size
        self._lock = threading.Lock()
        self._free: deque[tuple[int, Handler]] = deque((n, load(function)) for n in range(1, size + 1))
        self._waiters: deque[_Waiter] = deque()

    @contextmanager
    def lease(self, timeout: float = INTEGRATION_TIMEOUT_SECONDS) -> Iterator[Lease]:
        """An environment for one request; NoEnvironmentError when none came free in `timeout`."""
        started = time.perf_counter()
        with self._lock:
            if self._free:
                environment: tuple[int, Handler] | None = self._free.popleft()
                waiter = None
            else:
                environment, waiter = None, _Waiter()
                self._waiters.append(waiter)
        if waiter is not None:
            waiter.ready.wait(timeout)
            with self._lock:
                environment = waiter.environment
                if environment is None:  # timed out, and nobody handed it one meanwhile
                    self._waiters.remove(waiter)
            if environment is None:
                raise NoEnvironmentError(
                    f"{self.function.logical_id}: all {self.size} environments busy for {timeout:.0f} s"
                )
        assert environment is not None
        number, handler = environment
        try:
            yield Lease(handler, number, time.perf_counter() - started if waiter else 0.0)
        finally:
            self._give_back(environment)

    def _give_back(self, environment: tuple[int, Handler]) -> None:
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.environment = environment
                waiter.ready.set()
            else:
                self._free.append(environment)

    @property
    def waiting(self) -> int:
        """Requests waiting for an environment now."""
        return len(self._waiters)

    @property
    def free(self) -> int:
        return len(self._free)


ROUTER_STATE = ("current_event", "lambda_context")
_UNSET = object()


def isolate_router_state() -> None:
    """Make Powertools' per-process request state (`BaseRouter.current_event` and
    `lambda_context`) per thread. Without this, two environments serving at once read whichever
    event was resolved last: one user's request answered with another's claims (the shared
    routers of workload modules, included in every module copy, read it too). Each request is
    served start to end on one thread, so a thread's own value is its request's; a thread that
    never resolved a request sees the last value set anywhere, as before. Idempotent."""
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    if isinstance(BaseRouter, _PerThreadRouterState):
        return
    for name in ROUTER_STATE:
        initial = BaseRouter.__dict__.get(name, _UNSET)
        if initial is not _UNSET:
            _LAST[name] = initial
        type.__setattr__(BaseRouter, name, _InstanceSlot(name))  # what instances read and write
    BaseRouter.__class__ = _PerThreadRouterState  # type: ignore[assignment,method-assign]  # class-level writes


_STATE = threading.local()  # this thread's router state
_LAST: dict[str, Any] = {}  # the last value any thread set: what a thread that set none reads


def _read(name: str) -> Any:
    value = getattr(_STATE, name, _UNSET)
    if value is _UNSET:
        value = _LAST.get(name, _UNSET)
    if value is _UNSET:
        raise AttributeError(name)  # as before the first request: the attribute was never set
    return value


def _write(name: str, value: Any) -> None:
    setattr(_STATE, name, value)
    _LAST[name] = value


class _InstanceSlot:
    """`resolver.current_event` for every resolver instance: this thread's."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return _read(self.name)

    def __set__(self, instance: object, value: Any) -> None:
        _write(self.name, value)


class _PerThreadRouterState(ABCMeta):
    """BaseRouter's metaclass from now on: `BaseRouter.current_event` is this thread's."""

    @property
    def current_event(cls) -> Any:
        return _read("current_event")

    @current_event.setter
    def current_event(cls, value: Any) -> None:
        _write("current_event", value)

    @property
    def lambda_context(cls) -> Any:
        return _read("lambda_context")

    @lambda_context.setter
    def lambda_context(cls, value: Any) -> None:
        _write("lambda_context", value)
