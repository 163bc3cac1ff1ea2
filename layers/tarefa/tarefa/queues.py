"""The operator's view of the priority queues: depths, job counts and recent figures, pause and
resume."""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools import Logger

from tarefa.job import CamelModel, JobStatus, Priority
from tarefa.ports import Consumption, JobQueue
from tarefa.stats import JobStats, StatsSnapshot, WindowFigures, figures

logger = Logger(child=True)

PRIORITY_ORDER = (Priority.HIGH, Priority.MEDIUM, Priority.LOW)


class QueueView(CamelModel):
    name: str
    priority: Priority
    waiting: int  # visible, ready for a worker
    in_flight: int  # received by a worker (or hidden for a retry's backoff)
    delayed: int  # sent with a delay that has not passed
    dead_letter: int
    state: str  # running, paused, pausing or resuming
    paused: bool
    jobs: dict[JobStatus, int]  # jobs of this priority in the table, by status
    windows: dict[str, WindowFigures]  # "1m", "5m", "60m"


class QueuesOverview(CamelModel):
    queues: list[QueueView]
    jobs: dict[JobStatus, int]  # every queue's together
    windows: dict[str, WindowFigures]


class Queues:
    def __init__(self, queue: JobQueue, consumption: Consumption, stats: JobStats) -> None:
        self.queue = queue
        self.consumption = consumption
        self.stats = stats

    def view(self, priority: Priority, snapshot: tuple[StatsSnapshot, datetime] | None = None) -> QueueView:
        depth = self.queue.depth(priority)
        state = self.consumption.state(priority)
        mine = figures(*(snapshot or self.stats.snapshot()), priority)
        return QueueView(
            name=self.queue.name(priority),
            priority=priority,
            waiting=depth.waiting,
            in_flight=depth.in_flight,
            delayed=depth.delayed,
            dead_letter=depth.dead_letter,
            state=state,
            paused=state in ("paused", "pausing"),
            jobs=mine.jobs,
            windows=mine.windows,
        )

    def overview(self) -> QueuesOverview:
        snapshot = self.stats.snapshot()  # one read serves the three queues and the totals
        every = figures(*snapshot, None)
        return QueuesOverview(
            queues=[self.view(p, snapshot) for p in PRIORITY_ORDER], jobs=every.jobs, windows=every.windows
        )

    def pause(self, priority: Priority) -> QueueView:
        self.consumption.pause(priority)
        logger.info("queue paused", extra={"priority": priority})
        return self.view(priority)

    def resume(self, priority: Priority) -> QueueView:
        self.consumption.resume(priority)
        logger.info("queue resumed", extra={"priority": priority})
        return self.view(priority)
