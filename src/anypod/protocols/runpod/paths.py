"""Every path of RunPod's serverless API, client side and worker side.

The server's route table, the SDK and a worker's ``RUNPOD_*`` environment all read them from
here. :func:`fill` makes a concrete path, quoting each part.
"""

from __future__ import annotations

from urllib.parse import quote

PREFIX = "/v2"

# client API
RUN = "/v2/{endpoint}/run"
RUNSYNC = "/v2/{endpoint}/runsync"
STATUS = "/v2/{endpoint}/status/{job_id}"
STATUS_SYNC = "/v2/{endpoint}/status-sync/{job_id}"
STREAM = "/v2/{endpoint}/stream/{job_id}"
CANCEL = "/v2/{endpoint}/cancel/{job_id}"
RETRY = "/v2/{endpoint}/retry/{job_id}"
PURGE_QUEUE = "/v2/{endpoint}/purge-queue"
PURGE = "/v2/{endpoint}/purge"  # an alias some clients use
HEALTH = "/v2/{endpoint}/health"

# worker protocol
JOB_TAKE = "/v2/{endpoint}/job-take/{worker_id}"
JOB_TAKE_BATCH = "/v2/{endpoint}/job-take-batch/{worker_id}"
JOB_DONE = "/v2/{endpoint}/job-done/{worker_id}/{job_id}"
JOB_DONE_BATCH = "/v2/{endpoint}/job-done-batch/{worker_id}"  # anypod's; RunPod has none
JOB_STREAM = "/v2/{endpoint}/job-stream/{worker_id}/{job_id}"
PING = "/v2/{endpoint}/ping/{worker_id}"
JOB_STOP = "/v2/{endpoint}/job-stop/{worker_id}"
JOB_RELEASE = "/v2/{endpoint}/job-release/{worker_id}"  # anypod's: taken jobs handed back


def fill(template: str, **parts: str) -> str:
    """``fill(STATUS, endpoint="e", job_id="j")`` → ``/v2/e/status/j``. A ``/`` in a part is
    quoted; ``$`` is not (``$ID`` is the job id placeholder of a worker's URL templates)."""
    return template.format(**{name: quote(value, safe="$") for name, value in parts.items()})
