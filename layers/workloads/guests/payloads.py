"""The guests job types' payloads, apart from the other models: the API imports guests.jobs on
its cold start (to validate payloads) and builds only these two (each pydantic model costs 1.5
to 3 ms to build; the workload's twenty would cost the API ~30 ms)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"  # as it appears in /promotor/<slug>/<slug>
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164_PATTERN = r"^\+[1-9][0-9]{3,18}$"
PASSWORD_MIN = 8
PASSWORD_MAX_BYTES = 72  # bcrypt reads no further; longer is refused rather than cut silently


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def check_password(value: str) -> str:
    if len(value.encode()) > PASSWORD_MAX_BYTES:
        raise ValueError(f"the password is longer than {PASSWORD_MAX_BYTES} bytes")
    return value


# -- the payloads -----------------------------------------------------------------------------------


class RegisterJob(Camel):
    event_id: str = Field(pattern=ID_PATTERN)
    promoter_slug: str | None = Field(None, pattern=SLUG_PATTERN)
    phone: str = Field(min_length=4, max_length=20, pattern=E164_PATTERN)  # E.164, from the route
    first_name: str = Field(min_length=1, max_length=60)
    last_name: str = Field(min_length=1, max_length=60)
    email: str | None = Field(None, max_length=254, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=PASSWORD_MIN)
    submitted_at: AwareDatetime

    _check_password = field_validator("password")(check_password)


class LoginJob(Camel):
    event_id: str = Field(pattern=ID_PATTERN)
    promoter_slug: str | None = Field(None, pattern=SLUG_PATTERN)
    phone: str = Field(min_length=4, max_length=20, pattern=E164_PATTERN)
    password: str = Field(min_length=1)
    submitted_at: AwareDatetime

    _check_password = field_validator("password")(check_password)
