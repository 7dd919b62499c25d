"""The worker: takes jobs from Redis and runs their handlers, holding a lease
that a heartbeat renews; stops gracefully; fires cron entries; runs as one
process, a group of namespaces, or a supervisor of processes."""

from zizq.worker.stats import WorkerStats
from zizq.worker.worker import Worker

__all__ = ("Worker", "WorkerStats")
