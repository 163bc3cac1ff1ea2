"""Phone numbers to E.164 with Google's libphonenumber (`phonenumbers`), imported on the first
number: only the guests function's routes load it (the jobs get numbers already normalised).

A number without a leading + is read in the default region (GUESTS_DEFAULT_REGION, an ISO 3166
code; default PT, as the seed's numbers are Portuguese). Only numbers libphonenumber deems valid
(an assigned range of their country) pass.
"""

from __future__ import annotations

import os

from tarefa import Refusal

REGION_VARIABLE = "GUESTS_DEFAULT_REGION"
DEFAULT_REGION = "PT"


class InvalidPhoneError(Refusal):
    """A number that is not a phone's: the route's 422 naming the field."""

    code = "VALIDATION_ERROR"
    status = 422

    def __init__(self, reason: str) -> None:
        super().__init__("The request is not valid", [{"field": "phone", "message": reason}])


def default_region() -> str:
    return (os.environ.get(REGION_VARIABLE) or DEFAULT_REGION).strip().upper()


def normalise(raw: str, region: str | None = None) -> str:
    """The number in E.164 (+351935886310); InvalidPhoneError when it is not a valid one."""
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, region or default_region())
    except phonenumbers.NumberParseException:
        raise InvalidPhoneError("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneError("not a valid phone number") from None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
