"""KMS for the sensitive-field codec: data keys for envelope encryption (tarefa.sensitive).

Every call carries the same encryption context (the jobs table's name), which the key policy and
the functions' IAM conditions require: these grants open nothing encrypted for anything else.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tarefa.sensitive import InvalidCiphertextError, KeyServiceUnavailableError, KeyUnusableError

CONTEXT_KEY = "tarefa-jobs-table"
# A refusal that no retry changes; anything else (throttling, 5xx, KMS's internal and dependency
# errors, KeyUnavailableException, timeouts, no connection) is worth another try later.
UNUSABLE = frozenset(
    {
        "AccessDeniedException",
        "DisabledException",
        "IncorrectKeyException",
        "InvalidKeyUsageException",
        "KMSInvalidStateException",
        "NotFoundException",
        "ValidationException",
    }
)


class KmsKeyService:
    def __init__(self, client: Any, key_id: str, jobs_table: str) -> None:
        self.client = client
        self.key_id = key_id
        self.context = {CONTEXT_KEY: jobs_table}

    def generate_data_key(self) -> tuple[bytes, bytes]:
        try:
            answer = self.client.generate_data_key(
                KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=self.context
            )
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc) from None
        return bytes(answer["Plaintext"]), bytes(answer["CiphertextBlob"])

    def decrypt_data_key(self, encrypted: bytes) -> bytes:
        try:
            answer = self.client.decrypt(
                CiphertextBlob=encrypted, KeyId=self.key_id, EncryptionContext=self.context
            )
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc) from None
        return bytes(answer["Plaintext"])


def _classify(exc: Exception) -> Exception:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "InvalidCiphertextException":
            return InvalidCiphertextError(code)
        if code in UNUSABLE:
            return KeyUnusableError(code)
        return KeyServiceUnavailableError(code or "KMS error")
    return KeyServiceUnavailableError(type(exc).__name__)
