"""A job type for the concurrency tests (tests/e2e/test_api_concurrency.py), loaded by a stack
of their own with `--parameter-overrides JobModules=demo,rendezvous_jobs`.

`e2e.rendezvous` holds its `POST /jobs` in the API until `parties` requests are inside the API
at once: validating the payload leaves a mark in `dir` and waits for `parties` marks. Requests
served one at a time never meet (each gives up after `timeoutSeconds`, takes its mark back, and
is refused with a 422); requests served side by side do. This proves concurrency without timing
anything.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tarefa import JobContext, job_type

POLL_SECONDS = 0.02


class Rendezvous(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dir: str
    parties: int = Field(ge=1, le=64)
    timeout_seconds: float = Field(20, alias="timeoutSeconds", gt=0, le=25)
    marker: str = ""

    @model_validator(mode="after")
    def meet(self) -> Rendezvous:
        """Wait in the API (it validates before enqueueing) for the other parties."""
        here = Path(self.dir)
        if len(list(here.glob("*.mark"))) >= self.parties:  # met already: the worker's check
            return self
        mine = here / f"{uuid.uuid4()}.mark"
        mine.write_text(self.marker)
        deadline = time.monotonic() + self.timeout_seconds
        while len(list(here.glob("*.mark"))) < self.parties:
            if time.monotonic() > deadline:
                mine.unlink()
                raise ValueError(f"only {len(list(here.glob('*.mark')))} of {self.parties} parties met")
            time.sleep(POLL_SECONDS)
        return self


@job_type("e2e.rendezvous")
def rendezvous(payload: Rendezvous, ctx: JobContext) -> dict[str, str]:
    return {"marker": payload.marker}
