"""Bounds of the lists in RunPod's worker protocol (and anypod's batch extension to it)."""

from __future__ import annotations

MAX_TAKE_BATCH = 256  # jobs in one job-take-batch reply
MAX_DONE_BATCH = 1024  # results in one job-done-batch post
MAX_POST_BYTES = 16 * 1024 * 1024  # a worker's coalesced results per post (servers take 64 MiB)
MAX_PING_IDS = 1024  # job ids one ping may list; a worker holding more pings in parts
