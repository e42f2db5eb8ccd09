"""The ``RUNPOD_*`` environment that points a worker at an anypod server.

An unmodified RunPod worker image gets all of it (``anypod worker-env``); anypod's own worker
gives its handler process the part that makes ``runpod.serverless.progress_update`` and
streamed posts reach anypod.
"""

from __future__ import annotations

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
    query = f"?gpu={gpu.replace(' ', '+')}"

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
