"""Tests for the token cipher on its own: round trip, rotation, refusal of unknown keys."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from middleware.store.crypto import DecryptionError, TokenCipher


def test_round_trip_and_none() -> None:
    cipher = TokenCipher([Fernet.generate_key().decode()])
    token = cipher.encrypt("secret-value")
    assert token is not None and "secret-value" not in token
    assert cipher.decrypt(token) == "secret-value"
    assert cipher.encrypt(None) is None and cipher.decrypt(None) is None
    assert "secret" not in repr(cipher)


def test_rotation_moves_tokens_to_the_newest_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = TokenCipher([old]).encrypt("v")
    both = TokenCipher([new, old])
    assert both.decrypt(token) == "v"
    rotated = both.rotate(token)
    assert TokenCipher([new]).decrypt(rotated) == "v"
    with pytest.raises(DecryptionError):
        TokenCipher([old]).decrypt(rotated)


def test_needs_a_key() -> None:
    with pytest.raises(ValueError):
        TokenCipher([])
