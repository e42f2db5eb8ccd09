"""The ``RUNPOD_*`` environment that points a worker at an anypod server.

An unmodified RunPod worker image gets all of it (``anypod worker-env``); anypod's own worker
gives its handler process the part that makes ``runpod.serverless.progress_update`` and
streamed posts reach anypod.

``anypod worker-env`` prints it as an env file (:func:`env_file`) that means the same to
``set -a; . ./worker.env; set +a`` (sh), ``docker run --env-file worker.env`` (values verbatim,
no unquoting, no expansion) and ``env $(cat worker.env) cmd`` (word splitting, no expansion):
every value is unquoted and made of characters none of them treats specially, except the
SDK's job-id placeholder ``$ID``, which a shell would expand. A first line ``ID='$ID'`` makes
the shell expand ``$ID`` to itself; docker and ``env`` pass it on as a harmless extra variable.
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus

from anypod import errors
from anypod.protocols.runpod import paths

PING_INTERVAL_MS = 10_000
_CHILD_KEYS = (
    "RUNPOD_POD_ID",
    "RUNPOD_AI_API_KEY",
    "RUNPOD_WEBHOOK_POST_OUTPUT",
    "RUNPOD_WEBHOOK_POST_STREAM",
)


def worker_env(
    server: str, endpoint: str, worker_id: str, token: str, *, gpu: str, hostname: str
) -> dict[str, str]:
    """Everything ``runpod.serverless.start`` reads to take jobs from ``server``."""
    base = server.rstrip("/")
    query = f"?gpu={quote_plus(gpu, safe='').replace('~', '%7E')}"

    def url(template: str, **parts: str) -> str:
        return base + paths.fill(template, endpoint=endpoint, worker_id=worker_id, **parts) + query

    return {
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_POD_HOSTNAME": hostname,
        "RUNPOD_AI_API_KEY": token,
        "RUNPOD_WEBHOOK_GET_JOB": url(paths.JOB_TAKE),
        "RUNPOD_WEBHOOK_POST_OUTPUT": url(paths.JOB_DONE, job_id="$ID"),
        "RUNPOD_WEBHOOK_POST_STREAM": url(paths.JOB_STREAM, job_id="$ID"),
        "RUNPOD_WEBHOOK_PING": url(paths.PING),
        "RUNPOD_PING_INTERVAL": str(PING_INTERVAL_MS),
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
    }


def handler_env(
    server: str, endpoint: str, worker_id: str, token: str, *, gpu: str
) -> dict[str, str]:
    """The part a handler process needs: where progress and stream posts go, and as whom."""
    full = worker_env(server, endpoint, worker_id, token, gpu=gpu, hostname=worker_id)
    return {key: full[key] for key in _CHILD_KEYS}


JOB_ID_PLACEHOLDER = "$ID"  # the runpod SDK replaces this text in the output and stream URLs
# ``ID='$ID'``: a shell sourcing the file sets ID to the text $ID, so ``$ID`` in the lines after
# it expands to itself. Must come before any line that holds the placeholder.
PLACEHOLDER_LINE = f"ID='{JOB_ID_PLACEHOLDER}'"
# Characters that sh (in an assignment or after ``$(cat ...)`` word splitting), docker's
# ``--env-file`` and ``env`` all keep as they are. ``?`` (a glob character for ``env $(cat)``)
# is needed for the query string the SDK appends ``&isStream=`` to; a pattern that starts with
# ``RUNPOD_...=http:/`` matches no file in practice; so do the ``[`` ``]`` of an IPv6 host.
# ``~`` is left out (bash expands it after ``:`` in an assignment).
_PLACEHOLDER = re.compile(r"\$ID(?![A-Za-z0-9_])")  # ``$IDx`` would be the variable IDx
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:/?=%+@\[\]-]*")
_SERVER_CHAR = re.compile(r"[A-Za-z0-9_.,:/=%+@\[\]-]")
_SAFE_SERVER = re.compile(rf"https?://{_SERVER_CHAR.pattern}+")
_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")
WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_server(server: str) -> str:
    """``server`` if it can go into an env file unquoted, else a :class:`ConfigError`."""
    if not _SAFE_SERVER.fullmatch(server):
        bad = sorted({c for c in server if not _SERVER_CHAR.fullmatch(c)})
        detail = f"; it contains {', '.join(map(repr, bad))}" if bad else ""
        raise errors.ConfigError(
            f"--server {server!r} cannot go into a worker env file{detail}: give a plain "
            "http(s)://host[:port][/path] URL without spaces, quotes, '$', '~', '#', '&', "
            "';', '?', '*' or other characters a shell or docker --env-file would change"
        )
    return server


def check_worker_id(worker_id: str) -> str:
    if not WORKER_ID.fullmatch(worker_id):
        raise errors.ConfigError(
            f"invalid worker id {worker_id!r}: use letters, digits, '_', '-', '.' (max 128)"
        )
    return worker_id


def env_file(env: dict[str, str]) -> str:
    """``env`` as lines that sh, ``docker --env-file`` and ``env $(cat f)`` all read the same.

    No comment lines (``env $(cat f)`` would take ``#`` as a variable), no quotes (docker keeps
    them), no whitespace; a value that cannot be written so is a :class:`ConfigError`.
    """
    lines = [PLACEHOLDER_LINE]
    for key, value in env.items():
        if not _KEY.fullmatch(key) or key == "ID":
            raise errors.ConfigError(f"cannot write variable name {key!r} to an env file")
        if not _SAFE_VALUE.fullmatch(_PLACEHOLDER.sub("", value)):
            raise errors.ConfigError(
                f"{key}={value!r} has characters a shell or docker --env-file would change"
            )
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"
