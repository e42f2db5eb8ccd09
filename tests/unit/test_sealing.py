"""The cipher of encryption at rest (store/sealing.py): round trips, rotation, tampering, keys
it lacks, values from before encryption, and the settings that configure it."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from anypod import errors, settings
from anypod.runtime import keyring
from anypod.store import sealing

A, B, C = os.urandom(32), os.urandom(32), os.urandom(32)
VALUE = b'{"prompt": "the secret recipe"}'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_a_sealed_value_round_trips_and_hides_its_plaintext() -> None:
    keys = sealing.Keyring.of(A)
    stored = keys.seal(VALUE, "input", "job-1")
    assert sealing.is_sealed(stored) and b"secret" not in stored
    assert len(stored) == len(VALUE) + sealing.OVERHEAD
    assert keys.open(stored, "input", "job-1") == VALUE
    assert keys.seal(VALUE, "input", "job-1") != stored  # a fresh nonce each time
    assert keys.open(keys.seal(b"", "output", "j"), "output", "j") == b""


def test_values_sealed_under_an_old_key_open_after_rotation() -> None:
    old = sealing.Keyring.of(A).seal(VALUE, "output", "j")
    rotated = sealing.Keyring.of(B, A)
    assert rotated.open(old, "output", "j") == VALUE
    new = rotated.seal(VALUE, "output", "j")
    assert new[2:6] == sealing.Key(B).id  # new values carry the new key's id
    assert sealing.Keyring.of(B).open(new, "output", "j") == VALUE


def test_a_key_the_keyring_lacks_is_named_in_a_clear_error() -> None:
    stored = sealing.Keyring.of(A).seal(VALUE, "input", "j")
    with pytest.raises(sealing.SealError, match=f"key {sealing.Key(A).hex_id}.*not in the keyring"):
        sealing.Keyring.of(B, C).open(stored, "input", "j")
    with pytest.raises(sealing.SealError, match="no encryption key is configured"):
        sealing.PLAIN.open(stored, "input", "j")


@pytest.mark.parametrize("index", [2, 8, 20, -1])
def test_any_altered_byte_fails_authentication(index: int) -> None:
    keys = sealing.Keyring.of(A, B)
    stored = bytearray(keys.seal(VALUE, "input", "j"))
    stored[index] ^= 0x01
    with pytest.raises(sealing.SealError):
        keys.open(bytes(stored), "input", "j")


def test_a_value_moved_to_another_job_or_column_fails_authentication() -> None:
    keys = sealing.Keyring.of(A)
    stored = keys.seal(VALUE, "input", "job-of-tenant-a")
    with pytest.raises(sealing.SealError, match="failed authentication"):
        keys.open(stored, "input", "job-of-tenant-b")
    with pytest.raises(sealing.SealError, match="failed authentication"):
        keys.open(stored, "output", "job-of-tenant-a")


def test_plain_values_from_before_encryption_read_as_they_are() -> None:
    keys = sealing.Keyring.of(A)
    for legacy in (VALUE, b"[1, 2]", b'"text"', b"null", b""):
        assert not sealing.is_sealed(legacy)
        assert keys.open(legacy, "input", "j") == legacy


def test_a_truncated_or_unknown_format_is_refused() -> None:
    keys = sealing.Keyring.of(A)
    stored = keys.seal(VALUE, "input", "j")
    with pytest.raises(sealing.SealError, match="not a sealed value"):
        keys.open(stored[:20], "input", "j")
    with pytest.raises(sealing.SealError, match="not a sealed value"):
        keys.open(b"\x00\x02" + stored[2:], "input", "j")


def test_without_a_current_key_values_are_stored_plain_and_old_ones_still_open() -> None:
    sealed = sealing.Keyring.of(A).seal(VALUE, "input", "j")
    off = sealing.load(old_keys=[b64(A)])
    assert not off.sealing and off.seal(VALUE, "input", "j") == VALUE
    assert off.open(sealed, "input", "j") == VALUE
    assert sealing.PLAIN.seal(VALUE, "input", "j") == VALUE


# --- configuration -------------------------------------------------------------------------------


def test_the_key_seals_and_old_keys_open() -> None:
    keys = sealing.load(key=b64(B), old_keys=[b64(A), b64(B)])
    assert keys.current is not None and keys.current.id == sealing.Key(B).id
    assert keys.key_ids == [sealing.Key(A).hex_id, sealing.Key(B).hex_id]
    assert "on, key" in keys.describe()
    url_safe = base64.urlsafe_b64encode(A).decode()
    assert sealing.load(key=url_safe).key_ids == [sealing.Key(A).hex_id]


def test_a_key_file_lists_the_current_key_first(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2025-01\n{b64(C)}\n\n{b64(A)}\n")
    keys = sealing.load(key_file=str(path), old_keys=[b64(B)])
    assert keys.current is not None and keys.current.id == sealing.Key(C).id
    assert sorted(keys.key_ids) == sorted(sealing.Key(k).hex_id for k in (A, B, C))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not base64!", "ANYPOD_ENCRYPTION_KEY: not base64"),
        (b64(bytes(range(16))), "ANYPOD_ENCRYPTION_KEY: the key is 16 bytes, it must be 32"),
        (b64(bytes(range(33))), "the key is 33 bytes"),
        ("ünïcode", "not base64"),
    ],
    ids=["not-base64", "16-bytes", "33-bytes", "unicode"],
)
def test_a_bad_key_refuses_to_start_naming_the_setting(key: str, message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        sealing.load(key=key)


def test_bad_old_keys_and_key_files_name_their_setting(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="ANYPOD_ENCRYPTION_OLD_KEYS: the key is 3"):
        sealing.load(key=b64(A), old_keys=["YWJj"])
    path = tmp_path / "keys"
    path.write_text(f"{b64(A)}\nshort\n")
    with pytest.raises(errors.ConfigError, match=r"ANYPOD_ENCRYPTION_KEY_FILE .* line 2"):
        sealing.load(key_file=str(path))
    path.write_text("# nothing yet\n")
    with pytest.raises(errors.ConfigError, match="holds no key"):
        sealing.load(key_file=str(path))
    with pytest.raises(errors.ConfigError, match="cannot read it"):
        sealing.load(key_file=str(tmp_path / "missing"))
    with pytest.raises(errors.ConfigError, match="not both"):
        sealing.load(key=b64(A), key_file=str(path))


def test_settings_read_the_keys_from_the_environment_and_never_show_them() -> None:
    env = {
        "ANYPOD_ENCRYPTION_KEY": b64(A),
        "ANYPOD_ENCRYPTION_OLD_KEYS": f"{b64(B)}, {b64(C)}",
    }
    found = settings.from_env(env)
    assert found.encryption_old_keys == (b64(B), b64(C))
    assert b64(A) not in repr(found) and b64(B) not in repr(found)
    keys = keyring(found)
    assert keys.sealing and len(keys.key_ids) == 3
    assert not keyring(settings.from_env({})).key_ids
    with pytest.raises(errors.ConfigError, match="ANYPOD_ENCRYPTION_KEY"):
        keyring(settings.from_env({"ANYPOD_ENCRYPTION_KEY": "c2hvcnQ="}))
