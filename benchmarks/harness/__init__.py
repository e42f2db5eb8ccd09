"""What the benchmark scripts share, one concept per module.

procs: subprocesses and their cleanup; sut: running anypod (the system under test); cpu: CPU
accounting from /proc; stats: percentiles and medians; load: HTTP load generators; pg:
PostgreSQL databases; pyspy: profiles; report: tables, JSON, source identity, plots;
fake_worker: a minimal RunPod-protocol worker process.
"""
