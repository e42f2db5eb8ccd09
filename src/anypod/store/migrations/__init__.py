"""Versioned schema migrations, one ``NNNN_name.sql`` file per version and dialect."""

from __future__ import annotations

import dataclasses
from importlib import resources

from anypod import errors


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    """All migrations of a dialect (``sqlite`` or ``postgres``), oldest first."""
    folder = resources.files(__package__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def latest(dialect: str) -> int:
    return load(dialect)[-1].version


def pending(dialect: str, current: int) -> list[Migration]:
    return [m for m in load(dialect) if m.version > current]


def check(dialect: str, current: int, database: str) -> None:
    """Refuse a schema this version cannot use, saying what to run."""
    head = latest(dialect)
    if current > head:
        raise errors.SchemaMismatch(
            f"database {database} has schema version {current}, newer than this anypod "
            f"(knows up to {head}); upgrade anypod"
        )
    if current < head:
        raise errors.SchemaMismatch(
            f"database {database} is at schema version {current}, this anypod needs {head}; "
            f"run: anypod migrate --database {database}"
        )
