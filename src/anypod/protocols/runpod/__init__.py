"""RunPod's serverless wire format: paths (:mod:`.paths`), request and reply bodies
(:mod:`.schemas`), submissions and worker reports into domain records (:mod:`.submission`,
:mod:`.reports`), domain records into replies (:mod:`.render`), a handler's outcome into a
``job-done`` body (:mod:`.results`), and a worker's ``RUNPOD_*`` environment
(:mod:`.worker_env`).

Modules here import no HTTP stack: the worker's child process uses :mod:`.results`.
"""
