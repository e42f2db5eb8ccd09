"""Log output of anypod's processes (server, workers): one format, quiet HTTP libraries."""

from __future__ import annotations

import logging


def configure(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # the store logs an outage once (store.base.Outage); asyncpg's pool would add a traceback
    # per reconnect attempt
    logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)
