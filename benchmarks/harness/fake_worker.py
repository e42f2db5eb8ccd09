"""A minimal RunPod-protocol worker: ``slots`` loops of ``job-take`` then ``job-done`` over
aiohttp, no handler process; what the server alone can do when a worker costs almost nothing.

    python -m benchmarks.harness.fake_worker BASE_URL/v2/ENDPOINT TOKEN SLOTS   # until SIGTERM
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from benchmarks.harness import load, procs

DONE_BODY = b'{"output": {"ok": true}}'


def start(reg: procs.Registry, base: str, token: str, slots: int) -> procs.Proc:
    argv = [sys.executable, "-m", "benchmarks.harness.fake_worker", base, token, str(slots)]
    return reg.start(f"fake-worker-{slots}", argv)


async def _slot(session: aiohttp.ClientSession, base: str, wid: str) -> None:
    while True:
        async with session.get(f"{base}/job-take/{wid}?job_in_progress=0") as resp:
            if resp.status == 204:
                await resp.read()
                continue
            job = await resp.json(content_type=None)
        url = f"{base}/job-done/{wid}/{job['id']}?isStream=false"
        async with session.post(url, data=DONE_BODY, headers=load.JSON_HEADERS) as resp:
            await resp.read()


async def main(base: str, token: str, slots: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with load.session(2 * slots + 4, headers={"Authorization": token}) as session:
        wid = f"fake-{os.getpid()}"
        tasks = [asyncio.create_task(_slot(session, base, f"{wid}-{n}")) for n in range(slots)]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    base_url, worker_token, n_slots = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with asyncio.Runner(loop_factory=procs.loop_factory()) as runner:
        runner.run(main(base_url, worker_token, n_slots))
