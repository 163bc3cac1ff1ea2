"""Bearer tokens for the local stack, checked the way API Gateway's JWT authorizer checks them:
RS256 signature, issuer, audience, expiry, and a subject."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://tarefa.local/issuer"
AUDIENCE = "tarefa-local"
STATE_DIR = Path(".tarefa")
KEY_FILE = "signing-key.pem"


class TokenError(Exception):
    pass


class LocalAuthority:
    """Holds the local signing key (created on first use under .tarefa/)."""

    def __init__(self, state_dir: Path = STATE_DIR) -> None:
        self.path = state_dir / KEY_FILE
        if not self.path.exists():
            state_dir.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            self.path.touch(mode=0o600)
            self.path.write_bytes(pem)
        private = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        self.private_key = private
        self.public_key = private.public_key()

    def mint(self, user: str, admin: bool = False, ttl_seconds: int = 3600) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + ttl_seconds,
            "token_use": "id",
        }
        if admin:
            claims["cognito:groups"] = ["admin"]
        return jwt.encode(claims, self.private_key, algorithm="RS256")

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or TokenError with why it was refused."""
        if not authorization:
            raise TokenError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TokenError("Authorization must be 'Bearer <token>'")
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(),
                self.public_key,
                algorithms=["RS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from None
        return claims
