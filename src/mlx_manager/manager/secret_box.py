"""Provider secrets encrypted at rest with a key derived from the server secret (Fernet: AES-CBC + HMAC)."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    def __init__(self, server_secret: str) -> None:
        # A key of its own (HKDF with a label), so the JWT signing secret is never used as a cipher key directly.
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mlx-manager credentials").derive(
            server_secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The secret, or None when it was sealed under another server secret."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
