"""Encryption at rest: the job values a database stores (input, output and progress, error,
``s3_config``, stream chunks) sealed with AES-256-GCM under a keyring, and opened again.

Opt-in (``ANYPOD_ENCRYPTION_KEY`` or ``ANYPOD_ENCRYPTION_KEY_FILE``; see docs/deploy.md). The
SQL stores apply it at their row codec (:mod:`store.sql`), so SQLite and PostgreSQL both get
it and no statement changes: SQL only ever moves these values whole, never looks inside.

A sealed value is ``00 | 01 | key id (4) | nonce (12) | ciphertext | tag (16)``: 34 bytes more
than the plaintext. The leading NUL never starts JSON text, so a value written before
encryption was turned on (plain JSON) still reads, and a keyring with no current key still
opens what older keys sealed (turning encryption off). The key id (the first 4 bytes of a
SHA-256 of the key) picks the key that opens a value, so keys rotate: write under the new one,
keep the old ones for reading until what they sealed has been purged. The header, the column
and the job id are the associated data: a ciphertext copied into another row or column fails
to open instead of showing one tenant's input as another's.

The nonce is random (96 bits) per value; keep to NIST SP 800-38D's bound of 2^32 values per
key (about 4 billion writes) by rotating before then.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from anypod import errors

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = 0x00  # no JSON text starts with NUL: what tells a sealed value from a plain one
VERSION = 0x01
KEY_BYTES = 32
ID_BYTES = 4
NONCE_BYTES = 12
HEADER_BYTES = 2 + ID_BYTES  # magic, version, key id
PREFIX_BYTES = HEADER_BYTES + NONCE_BYTES
OVERHEAD = PREFIX_BYTES + 16  # and the GCM tag
KEY_SETTING = "ANYPOD_ENCRYPTION_KEY"
OLD_KEYS_SETTING = "ANYPOD_ENCRYPTION_OLD_KEYS"
KEY_FILE_SETTING = "ANYPOD_ENCRYPTION_KEY_FILE"


class SealError(errors.AnypodError):
    """A stored value could not be opened: its key is not in the keyring, or it was altered."""


class Key:
    """One AES-256 key and the id that sealed values carry."""

    __slots__ = ("aead", "id")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError(f"a key is {KEY_BYTES} bytes, not {len(raw)}")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # 30 ms: when needed

        self.id = hashlib.sha256(b"anypod key id\x00" + raw).digest()[:ID_BYTES]
        self.aead: AESGCM = AESGCM(raw)

    @property
    def hex_id(self) -> str:
        return self.id.hex()


class Keyring:
    """The current key (seals every new value; None: values are stored plain) and the keys
    that open what was sealed before."""

    def __init__(self, current: Key | None = None, old: Sequence[Key] = ()) -> None:
        self.current = current
        keys = [*old, current] if current is not None else list(old)
        self._by_id = {k.id: k for k in keys}

    @classmethod
    def of(cls, *raw: bytes) -> Keyring:
        """The keyring of these keys; the first seals."""
        keys = [Key(r) for r in raw]
        return cls(keys[0] if keys else None, keys[1:])

    @property
    def sealing(self) -> bool:
        return self.current is not None

    @property
    def key_ids(self) -> list[str]:
        return [k.hex() for k in self._by_id]

    def describe(self) -> str:
        """For the startup log: which key seals, how many more open."""
        if self.current is None:
            more = f" ({len(self._by_id)} key(s) still open sealed values)" if self._by_id else ""
            return f"encryption at rest: off{more}"
        return (
            f"encryption at rest: on, key {self.current.hex_id}"
            f" (+{len(self._by_id) - 1} older key(s) for reading)"
        )

    def seal(self, value: bytes, column: str, job_id: str) -> bytes:
        """``value`` as stored in ``column`` of job ``job_id``: sealed when a key is current."""
        key = self.current
        if key is None:
            return value
        header = bytes((MAGIC, VERSION)) + key.id
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.aead.encrypt(nonce, value, _context(header, column, job_id))
        return b"".join((header, nonce, sealed))

    def open(self, stored: bytes, column: str, job_id: str) -> bytes:
        """The plaintext of a stored value (a plain one, from before sealing, as it is)."""
        if not stored or stored[0] != MAGIC:
            return stored
        key = self._by_id.get(stored[2:HEADER_BYTES])
        if key is None or len(stored) < OVERHEAD or stored[1] != VERSION:
            raise self._unopenable(stored, f"{column} of job {job_id!r}")
        view = memoryview(stored)
        context = _context(stored[:HEADER_BYTES], column, job_id)
        try:
            return key.aead.decrypt(view[HEADER_BYTES:PREFIX_BYTES], view[PREFIX_BYTES:], context)
        except Exception as exc:
            from cryptography.exceptions import InvalidTag

            if not isinstance(exc, InvalidTag):
                raise
            raise SealError(
                f"{column} of job {job_id!r} failed authentication under key {key.hex_id}:"
                " altered, copied from another row, or corrupt"
            ) from None

    def _unopenable(self, stored: bytes, where: str) -> SealError:
        """Why a value that looks sealed has no key here to open it."""
        if len(stored) < OVERHEAD or stored[1] != VERSION:
            return SealError(f"{where} is not a sealed value this version of anypod can read")
        if not self._by_id:
            return SealError(
                f"{where} is encrypted, but no encryption key is configured"
                f" ({KEY_SETTING} or {KEY_FILE_SETTING})"
            )
        return SealError(
            f"{where} is sealed with key {stored[2:HEADER_BYTES].hex()}, which is not in the"
            f" keyring ({', '.join(self.key_ids)}): add it to {OLD_KEYS_SETTING} or the key file"
        )


PLAIN = Keyring()
"""No keys: values are stored as they are (and a sealed one raises :class:`SealError`)."""


def is_sealed(stored: bytes) -> bool:
    return bool(stored) and stored[0] == MAGIC


def _context(header: bytes, column: str, job_id: str) -> bytes:
    """The associated data: the value belongs to this column of this job."""
    return b"%s%s\x00%s" % (header, column.encode(), job_id.encode())


# --- configuration -----------------------------------------------------------------------------


def load(
    *, key: str | None = None, old_keys: Sequence[str] = (), key_file: str | None = None
) -> Keyring:
    """The keyring of the settings: ``key`` (base64) or the first key of ``key_file`` seals;
    the file's other lines and ``old_keys`` only open. Raises :class:`errors.ConfigError`
    naming the setting at fault."""
    if key and key_file:
        raise errors.ConfigError(
            f"set {KEY_SETTING} or {KEY_FILE_SETTING} (--encryption-key-file), not both"
        )
    named = [(KEY_SETTING, key)] if key else []
    if key_file:
        named += _file_keys(key_file)
    current = _parse(*named[0]) if named else None
    old = [_parse(setting, text) for setting, text in named[1:]]
    old += [_parse(OLD_KEYS_SETTING, text) for text in old_keys]
    unique = {k.id: k for k in old if current is None or k.id != current.id}
    return Keyring(current, list(unique.values()))


def _file_keys(path: str) -> list[tuple[str, str]]:
    """The keys of a key file, one base64 key a line (``#`` comments and blank lines skipped),
    each named by its line for error messages."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"{KEY_FILE_SETTING}={path!r}: cannot read it: {exc}") from exc
    found = [
        (f"{KEY_FILE_SETTING} {path!r} line {n}", line.strip())
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not found:
        raise errors.ConfigError(f"{KEY_FILE_SETTING}={path!r} holds no key")
    return found


def _parse(setting: str, text: str) -> Key:
    """A base64 key (standard or URL-safe alphabet) of exactly 32 bytes."""
    text = text.strip()
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise errors.ConfigError(
            f"{setting}: not base64; make a key with `openssl rand -base64 32`"
        ) from None
    if len(raw) != KEY_BYTES:
        raise errors.ConfigError(
            f"{setting}: the key is {len(raw)} bytes, it must be {KEY_BYTES}"
            " (base64 of 32 random bytes: `openssl rand -base64 32`)"
        )
    return Key(raw)
