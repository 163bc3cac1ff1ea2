"""Recipients to E.164 with libphonenumber (`phonenumbers`), imported on the first number: only
the messaging routes load it (the jobs get numbers already normalised).

A number without a leading + is read in the default region (MESSAGING_DEFAULT_REGION, an ISO
3166 code; default BR, the seeds' numbers are Brazilian). Only numbers libphonenumber deems valid
pass. A number is never put in an error message or a log line.
"""

from __future__ import annotations

import os

from tarefa import Refusal

REGION_VARIABLE = "MESSAGING_DEFAULT_REGION"
DEFAULT_REGION = "BR"


class InvalidPhoneError(Refusal):
    code = "VALIDATION_ERROR"
    status = 422

    def __init__(self, reason: str, field: str = "to") -> None:
        super().__init__("The request is not valid", [{"field": field, "message": reason}])


def default_region() -> str:
    return (os.environ.get(REGION_VARIABLE) or DEFAULT_REGION).strip().upper()


def normalise(raw: str, region: str | None = None, field: str = "to") -> str:
    """The number in E.164 (+5511987654321); InvalidPhoneError naming `field` otherwise."""
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, region or default_region())
    except phonenumbers.NumberParseException:
        raise InvalidPhoneError("not a phone number", field) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneError("not a valid phone number", field) from None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
