"""Sensitive payload fields: a payload codec (Temporal's name for it) for the fields a job type
declares with `JobPolicy(sensitive=("password",))`.

Envelope encryption: a 256-bit data key from KMS `GenerateDataKey` encrypts the job's sensitive
values with AES-256-GCM, the job id (and the sealed field names) as associated data, so a
ciphertext cannot be moved to another job or have its field list edited. The KMS-encrypted data
key is stored beside the ciphertext, in the job's `sealed` envelope. The payload keeps the
REDACTED marker in each sealed field's place, so every view of the job (the API, listings, the
dashboard, dead letters, the job cache, the table's stream) shows the marker without knowing
about this module; the worker opens the envelope just before the handler runs, and the write
that ends the job drops it (Job.transition).

KMS stays off the per-job path: a data key is reused for MAX_KEY_AGE_SECONDS or MAX_KEY_USES
seals per execution environment, whichever comes first (the AWS Encryption SDK's caching
CMM), and decrypted data keys are kept in a bounded LRU in the worker.

`cryptography` (AES-GCM) is imported only when a value is sealed or opened: an API or worker
that never meets a sensitive field never loads it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tarefa.errors import PermanentJobError, RetryableJobError

if TYPE_CHECKING:
    from tarefa.jobtypes import JobType

REDACTED = "[redacted]"
ENVELOPE_VERSION = 1
ASSOCIATED_DATA_PREFIX = b"tarefa/sensitive-fields/v1\x00"
NONCE_BYTES = 12  # AES-GCM's 96-bit nonce, random per seal
DATA_KEY_BYTES = 32  # AES-256
# Encryption side (API, chained enqueues): one data key per execution environment for at most
# this long and this many seals. 10,000 random nonces per key is far below AES-GCM's 2^32 bound.
MAX_KEY_AGE_SECONDS = 300.0
MAX_KEY_USES = 10_000
# Decryption side (worker): decrypted data keys kept, least recently used out, each this long at
# most (how long a disabled KMS key still opens jobs in a warm worker).
OPEN_CACHE_ENTRIES = 128
OPEN_CACHE_SECONDS = 600.0
# Scrubbing: a sensitive value shorter than this is not looked for in error messages, progress
# and results (one or two characters would match ordinary text everywhere).
MIN_SCRUB_LENGTH = 4

# errorDetails.code of a job whose sealed fields could not be opened
KMS_UNAVAILABLE = "SENSITIVE_KMS_UNAVAILABLE"  # retryable: throttled, 5xx, timeout, no connection
TAMPERED = "SENSITIVE_TAMPERED"  # permanent: ciphertext, data key or field list altered, or moved
KEY_UNUSABLE = "SENSITIVE_KEY_UNUSABLE"  # permanent: the KMS key is disabled, deleted, or refused
FIELDS_DROPPED = "SENSITIVE_FIELDS_DROPPED"  # permanent: the job ended once and lost its envelope


# -- what the key service (KMS) raises; the adapter maps its errors to these ------------------------
class KeyServiceUnavailableError(Exception):
    """KMS did not answer or asked to slow down: worth another try later."""


class KeyUnusableError(Exception):
    """The key cannot be used: disabled, pending deletion, gone, another key, or access denied."""


class InvalidCiphertextError(Exception):
    """KMS refused the encrypted data key as not one of its ciphertexts (altered)."""


class KeyService(Protocol):
    """KMS as the codec needs it (tarefa.adapters.kms)."""

    key_id: str

    def generate_data_key(self) -> tuple[bytes, bytes]:
        """A new data key: (plaintext, encrypted under the KMS key)."""

    def decrypt_data_key(self, encrypted: bytes) -> bytes: ...


# -- what a job whose envelope cannot be opened fails with ----------------------------------------
class SensitiveFieldsUnavailableError(RetryableJobError):
    code = KMS_UNAVAILABLE


class SensitiveFieldsError(PermanentJobError):
    """Permanent: the sealed fields of this job can never be opened."""


class SealingUnavailableError(Exception):
    """The values could not be sealed (KMS down or the key unusable): nothing was stored."""


@dataclass
class _DataKey:
    plaintext: bytes
    encrypted: bytes
    created: float
    uses: int = 0


class Codec:
    """Seals a job's sensitive values into an envelope and opens it again."""

    def __init__(
        self,
        keys: KeyService,
        *,
        max_key_age: float = MAX_KEY_AGE_SECONDS,
        max_key_uses: int = MAX_KEY_USES,
        open_cache_entries: int = OPEN_CACHE_ENTRIES,
        open_cache_seconds: float = OPEN_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.max_key_age = max_key_age
        self.max_key_uses = max_key_uses
        self.open_cache_entries = open_cache_entries
        self.open_cache_seconds = open_cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._current: _DataKey | None = None
        self._opened: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self.generated = 0  # KMS GenerateDataKey calls made
        self.decrypted = 0  # KMS Decrypt calls made

    # -- sealing ---------------------------------------------------------------------------
    def seal(self, job_id: str, values: dict[str, Any]) -> dict[str, Any]:
        """The envelope of `values` ({payload key: value}) for job `job_id`. Raises
        SealingUnavailableError when KMS cannot give a data key."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        fields = sorted(values)
        key = self._data_key()
        nonce = os.urandom(NONCE_BYTES)
        plaintext = json.dumps({f: values[f] for f in fields}, separators=(",", ":")).encode()
        ciphertext = AESGCM(key.plaintext).encrypt(nonce, plaintext, associated_data(job_id, fields))
        return {
            "v": ENVELOPE_VERSION,
            "keyId": self.keys.key_id,
            "dataKey": _b64(key.encrypted),
            "nonce": _b64(nonce),
            "fields": fields,
            "ciphertext": _b64(ciphertext),
        }

    def _data_key(self) -> _DataKey:
        with self._lock:
            now = self.clock()
            key = self._current
            if key is None or key.uses >= self.max_key_uses or now - key.created >= self.max_key_age:
                try:
                    plaintext, encrypted = self.keys.generate_data_key()
                except (KeyServiceUnavailableError, KeyUnusableError) as exc:
                    raise SealingUnavailableError(str(exc)) from exc
                self.generated += 1
                key = self._current = _DataKey(plaintext, encrypted, now)
                self._remember(encrypted, plaintext, now)  # a job this environment seals opens free
            key.uses += 1
            return key

    # -- opening ---------------------------------------------------------------------------
    def open(self, job_id: str, envelope: Any) -> dict[str, Any]:
        """The values sealed for `job_id`; SensitiveFieldsUnavailableError (retryable) or
        SensitiveFieldsError (permanent, with its code) when that is not possible."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            if not isinstance(envelope, dict) or envelope.get("v") != ENVELOPE_VERSION:
                raise ValueError("not a version 1 envelope")
            fields = envelope["fields"]
            if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
                raise ValueError("fields is not a list of names")
            encrypted = _unb64(envelope["dataKey"])
            nonce = _unb64(envelope["nonce"])
            ciphertext = _unb64(envelope["ciphertext"])
            if len(nonce) != NONCE_BYTES:
                raise ValueError("the nonce has the wrong length")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise SensitiveFieldsError(f"The sealed fields are malformed: {exc}", code=TAMPERED) from None
        key = self._open_data_key(encrypted)
        try:
            plaintext = AESGCM(key).decrypt(nonce, ciphertext, associated_data(job_id, fields))
            values = json.loads(plaintext)
        except InvalidTag:
            raise SensitiveFieldsError(
                "The sealed fields failed authentication: altered, or sealed for another job",
                code=TAMPERED,
            ) from None
        except ValueError:
            raise SensitiveFieldsError("The sealed fields do not decode", code=TAMPERED) from None
        if not isinstance(values, dict) or sorted(values) != fields:
            raise SensitiveFieldsError("The sealed fields do not match their list", code=TAMPERED)
        return values

    def _open_data_key(self, encrypted: bytes) -> bytes:
        digest = hashlib.sha256(encrypted).digest()
        with self._lock:
            found = self._opened.get(digest)
            if found is not None and self.clock() - found[1] < self.open_cache_seconds:
                self._opened.move_to_end(digest)
                return found[0]
        try:
            plaintext = self.keys.decrypt_data_key(encrypted)
        except KeyServiceUnavailableError as exc:
            raise SensitiveFieldsUnavailableError(f"KMS could not open the data key: {exc}") from None
        except InvalidCiphertextError:
            raise SensitiveFieldsError(
                "KMS refused the sealed data key: it was altered", code=TAMPERED
            ) from None
        except KeyUnusableError as exc:
            raise SensitiveFieldsError(
                f"The KMS key cannot open this job: {exc}", code=KEY_UNUSABLE
            ) from None
        if len(plaintext) != DATA_KEY_BYTES:
            raise SensitiveFieldsError("KMS returned a data key of the wrong size", code=TAMPERED)
        with self._lock:
            self.decrypted += 1
            self._remember(encrypted, plaintext, self.clock())
        return plaintext

    def _remember(self, encrypted: bytes, plaintext: bytes, now: float) -> None:
        """Caller holds the lock."""
        digest = hashlib.sha256(encrypted).digest()
        self._opened[digest] = (plaintext, now)
        self._opened.move_to_end(digest)
        while len(self._opened) > self.open_cache_entries:
            self._opened.popitem(last=False)

    def forget(self) -> None:
        """Drop every cached data key (tests; a key rotation needs none of it)."""
        with self._lock:
            self._current = None
            self._opened.clear()


def associated_data(job_id: str, fields: Iterable[str]) -> bytes:
    """AES-GCM's associated data: the job id and the sealed field names."""
    return ASSOCIATED_DATA_PREFIX + job_id.encode() + b"\x00" + "\x00".join(fields).encode()


class SensitiveFields:
    """What the API and the worker do with the sensitive fields of a job type: seal them into
    an envelope, open them for the handler, redact them, and scrub their values out of text.
    The codec (and with it the KMS client and `cryptography`) is built on first use."""

    def __init__(self, codec: Callable[[], Codec] | None) -> None:
        self._make_codec = codec
        self._codec: Codec | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self._make_codec is not None

    @property
    def codec(self) -> Codec:
        if self._make_codec is None:
            raise KeyUnusableError("no KMS key is configured for sensitive fields (TAREFA_SENSITIVE_KEY_ID)")
        with self._lock:
            if self._codec is None:
                self._codec = self._make_codec()
            return self._codec

    def seal(self, job_type: JobType, job_id: str, payload: Any) -> tuple[Any, dict[str, Any] | None]:
        """The payload with each sensitive value present replaced by REDACTED, and the envelope
        that holds them (None when none was present)."""
        if not job_type.sensitive_fields or not isinstance(payload, dict):
            return payload, None
        values = {k: payload[k] for k in job_type.sensitive_keys if payload.get(k) is not None}
        if not values:
            return payload, None
        try:
            envelope = self.codec.seal(job_id, values)
        except KeyUnusableError as exc:
            raise SealingUnavailableError(str(exc)) from exc
        return {**payload, **dict.fromkeys(values, REDACTED)}, envelope

    def open(
        self, job_type: JobType, job_id: str, payload: Any, sealed: dict[str, Any] | None
    ) -> tuple[Any, list[str]]:
        """The payload with its sealed values back, and those values (to scrub them out of what
        the run leaves behind). A job that lost its envelope when it ended (then was redriven
        or retried) fails permanently: the values are gone for good."""
        if not job_type.sensitive_fields or not isinstance(payload, dict):
            return payload, []
        if sealed is None:
            if any(payload.get(k) == REDACTED for k in job_type.sensitive_keys):
                raise SensitiveFieldsError(
                    "The job's sensitive fields were dropped when it ended; enqueue it again",
                    code=FIELDS_DROPPED,
                )
            return payload, []  # none was given (optional fields)
        try:
            values = self.codec.open(job_id, sealed)
        except KeyUnusableError as exc:  # no key configured here
            raise SensitiveFieldsError(str(exc), code=KEY_UNUSABLE) from None
        return {**payload, **values}, secret_strings(values.values())

    @staticmethod
    def redact(job_type: JobType, payload: Any) -> Any:
        """The payload with every sensitive value (under any of its input keys) as REDACTED."""
        return redact(job_type, payload)


def redact(job_type: JobType, payload: Any) -> Any:
    if not job_type.sensitive_fields or not isinstance(payload, dict):
        return payload
    keys = {k for f in job_type.sensitive_fields for k in f.inputs}
    return {k: (REDACTED if k in keys and v is not None else v) for k, v in payload.items()}


def input_secrets(job_type: JobType, payload: Any) -> list[str]:
    """The sensitive values of a request's payload, as text to scrub out of error messages."""
    if not job_type.sensitive_fields or not isinstance(payload, dict):
        return []
    keys = {k for f in job_type.sensitive_fields for k in f.inputs}
    return secret_strings(v for k, v in payload.items() if k in keys)


def secret_strings(values: Iterable[Any]) -> list[str]:
    """Every text form a value could take in a message: strings and numbers at any depth."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            found.add(value if isinstance(value, str) else json.dumps(value))
        if isinstance(value, dict | list) and value:
            found.add(json.dumps(value, separators=(",", ":")))
            found.add(json.dumps(value))
            found.add(str(value))

    for value in values:
        walk(value)
    return sorted((s for s in found if s and s != REDACTED), key=len, reverse=True)


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """Replaces every occurrence of a secret in a text with REDACTED (longest first)."""
    needles = [s for s in secrets if len(s) >= MIN_SCRUB_LENGTH]
    if not needles:
        return _same

    def scrub(text: str) -> str:
        for needle in needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    return scrub


WITHHELD = "Invalid value (the message is withheld: it quoted a sensitive field)"


def withholding(secrets: Iterable[str]) -> Callable[[str], str]:
    """For validation messages (a 422): any message that contains a sensitive value, however
    short, is replaced whole, so no error ever echoes one."""
    needles = [s for s in secrets if s]
    if not needles:
        return _same

    def withhold(text: str) -> str:
        return WITHHELD if any(needle in text for needle in needles) else text

    return withhold


def scrub_json(value: Any, scrub: Callable[[str], str]) -> Any:
    """`scrub` applied to every string (keys too) of a JSON value."""
    if scrub is _same:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub_json(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(v, scrub) for v in value]
    return value


def _same(text: str) -> str:
    return text


# -- logs written while a handler holds the plaintext ------------------------------------------------
_STANDARD_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}
_active = threading.local()


class _ScrubbingFilter(logging.Filter):
    """On every handler: while this thread runs a job whose sensitive fields are open, a log
    record's message, arguments, extras and traceback are scrubbed of their values (ctx.logger,
    the engine's loggers, a workload's own `logging`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub: Callable[[str], str] | None = getattr(_active, "scrub", None)
        if scrub is None:
            return True
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg} {record.args}"
        record.msg, record.args = scrub(message), None
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD_RECORD_KEYS:
                continue
            if isinstance(value, str):
                setattr(record, key, scrub(value))
            elif isinstance(value, dict | list):
                setattr(record, key, scrub_json(json.loads(json.dumps(value, default=str)), scrub))
        if record.exc_info:
            record.traceback = scrub("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = _ScrubbingFilter()


@contextmanager
def scrubbing_logs(scrub: Callable[[str], str]) -> Iterator[None]:
    """Scrub this thread's log records with `scrub` inside the block (the handler's run)."""
    if scrub is _same:
        yield
        return
    loggers = [logging.getLogger()] + [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    handlers = [h for logger in loggers for h in logger.handlers]
    if logging.lastResort is not None:  # what a record no handler takes goes to (stderr)
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    previous = getattr(_active, "scrub", None)
    _active.scrub = scrub
    try:
        yield
    finally:
        _active.scrub = previous


NO_SCRUB: Callable[[str], str] = _same


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected base64 text")
    return base64.b64decode(text, validate=True)
