"""The operator's view of the priority queues: depths, pause and resume."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from tarefa.job import CamelModel, Priority
from tarefa.ports import Consumption, JobQueue

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


class Queues:
    def __init__(self, queue: JobQueue, consumption: Consumption) -> None:
        self.queue = queue
        self.consumption = consumption

    def view(self, priority: Priority) -> QueueView:
        depth = self.queue.depth(priority)
        state = self.consumption.state(priority)
        return QueueView(
            name=self.queue.name(priority),
            priority=priority,
            waiting=depth.waiting,
            in_flight=depth.in_flight,
            delayed=depth.delayed,
            dead_letter=depth.dead_letter,
            state=state,
            paused=state in ("paused", "pausing"),
        )

    def overview(self) -> list[QueueView]:
        return [self.view(p) for p in PRIORITY_ORDER]

    def pause(self, priority: Priority) -> QueueView:
        self.consumption.pause(priority)
        logger.info("queue paused", extra={"priority": priority})
        return self.view(priority)

    def resume(self, priority: Priority) -> QueueView:
        self.consumption.resume(priority)
        logger.info("queue resumed", extra={"priority": priority})
        return self.view(priority)
