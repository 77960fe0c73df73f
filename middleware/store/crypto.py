"""Store crypto: Fernet encryption at rest for OAuth tokens and webhook secrets, with key rotation.

``TOKEN_ENCRYPTION_KEY`` holds one or more comma-separated Fernet keys. The first encrypts; all of
them decrypt (MultiFernet), so an operator rotates by prepending a new key, running
``flask --app app db rotate-keys``, then dropping the old key.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class DecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with any configured key (key removed too early?)."""


class TokenCipher:
    """Encrypts and decrypts short secrets; holds keys, never logs them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def __repr__(self) -> str:
        return "<TokenCipher>"

    def encrypt(self, plaintext: str | None) -> str | None:
        """The Fernet token (text) for ``plaintext``; ``None`` stays ``None``."""
        if plaintext is None:
            return None
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str | None) -> str | None:
        """The plaintext of a stored token; ``None`` stays ``None``."""
        if token is None:
            return None
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            raise DecryptionError(
                "a stored secret cannot be decrypted with TOKEN_ENCRYPTION_KEY; was the key that "
                "encrypted it removed? Reconnect the connection or restore the key."
            ) from None

    def rotate(self, token: str | None) -> str | None:
        """Re-encrypt a stored token under the first (newest) key."""
        if token is None:
            return None
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise DecryptionError("a stored secret cannot be decrypted for rotation") from None
