"""app/crypto.py: the keyring, the column type's round trip, the blind index."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from app.crypto import DecryptionError, Keyring, keyring_for

SECRET = "unit-secret-key-for-derivation-0123456789abcdefgh"
INDEX_KEY = "blind-index-key-unit-tests-0123456789abcdefghijk"


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = Keyring.from_settings(old, INDEX_KEY)
    token = before.encrypt("ada@example.com")
    assert "ada" not in token and token.startswith("gAAAAA")
    after = Keyring.from_settings(f"{new}, {old}", INDEX_KEY)
    assert after.decrypt(token) == "ada@example.com"
    assert not after.is_current(token)
    rotated = after.reencrypt(token)
    assert after.is_current(rotated)
    # Once re-encrypted, the old key can go.
    assert Keyring.from_settings(new, INDEX_KEY).decrypt(rotated) == "ada@example.com"
    with pytest.raises(DecryptionError, match="ENCRYPTION_KEYS"):
        Keyring.from_settings(new, INDEX_KEY).decrypt(token)


def test_a_wrong_key_fails_loudly_and_plaintext_is_not_read_as_ciphertext() -> None:
    token = Keyring.from_settings(Fernet.generate_key().decode(), INDEX_KEY).encrypt("x")
    wrong = Keyring.from_settings(Fernet.generate_key().decode(), INDEX_KEY)
    with pytest.raises(
        DecryptionError, match="could not be decrypted with any key in ENCRYPTION_KEYS"
    ):
        wrong.decrypt(token)
    with pytest.raises(DecryptionError, match="not encrypted"):
        wrong.decrypt("ada@example.com")
    with pytest.raises(DecryptionError):
        wrong.decrypt("gAAAAAtampered")


def test_malformed_keys_are_refused_naming_the_setting() -> None:
    with pytest.raises(RuntimeError, match="ENCRYPTION_KEYS: key 2 is not a Fernet key"):
        Keyring.from_settings(f"{Fernet.generate_key().decode()},not-a-key", INDEX_KEY)
    with pytest.raises(RuntimeError, match="BLIND_INDEX_KEY must be at least 32"):
        Keyring.from_settings(Fernet.generate_key().decode(), "short")


def test_blind_index_is_keyed_normalized_and_survives_key_rotation() -> None:
    a = Keyring.from_settings(Fernet.generate_key().decode(), INDEX_KEY)
    b = Keyring.from_settings(Fernet.generate_key().decode(), INDEX_KEY)
    assert a.email_hash(" Ada@Example.COM ") == a.email_hash("ada@example.com")
    assert a.email_hash("ada@example.com") == b.email_hash("ada@example.com")  # rotation-proof
    assert len(a.email_hash("ada@example.com")) == 64
    other = Keyring.from_settings(Fernet.generate_key().decode(), INDEX_KEY + "x")
    assert other.email_hash("ada@example.com") != a.email_hash("ada@example.com")
    assert a.email_hash("ada@example.com") != a.email_hash("bob@example.com")


def test_development_keys_are_derived_from_the_secret_key_and_stable() -> None:
    one = keyring_for({"SECRET_KEY": SECRET})
    two = keyring_for({"SECRET_KEY": SECRET})
    assert two.decrypt(one.encrypt("ada")) == "ada"
    assert one.email_hash("ada@example.com") == two.email_hash("ada@example.com")
    other = keyring_for({"SECRET_KEY": SECRET + "!"})
    with pytest.raises(DecryptionError):
        other.decrypt(one.encrypt("ada"))
    # The two derived keys differ from each other (labels) and from the secret itself.
    assert one.blind_index_key != SECRET.encode()


@pytest.mark.parametrize(
    "config",
    [
        {"KASSA_ENV": "production", "SECRET_KEY": SECRET},
        {"KASSA_ENV": "production", "SECRET_KEY": SECRET, "BLIND_INDEX_KEY": INDEX_KEY},
        {
            "KASSA_ENV": "production",
            "SECRET_KEY": SECRET,
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        },
    ],
)
def test_production_never_derives_keys(config: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="ENCRYPTION_KEYS and BLIND_INDEX_KEY must be set"):
        keyring_for(config)
