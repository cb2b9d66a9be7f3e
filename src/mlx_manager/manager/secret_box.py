"""Provider secrets encrypted at rest (Fernet: AES-CBC + HMAC) under the credential key, which lives in its own
0600 file (manager/credential_keys.py), never in the database: a copy of the database opens no provider key."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    """The first key seals; every key opens (the older ones during a rotation)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def legacy(cls, server_secret: str) -> SecretBox:
        """The box of versions that derived the key from the JWT secret: only to re-encrypt what they sealed."""
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mlx-manager credentials").derive(
            server_secret.encode()
        )
        return cls([base64.urlsafe_b64encode(key)])

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The secret, or None when it was sealed under a key this box does not hold."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
