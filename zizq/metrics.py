"""Prometheus metrics for a worker process (``zizq worker --metrics-port``).

Job counts and handler durations are counted in the process, from the
worker's ``job_end`` events (:mod:`zizq.events`): nothing is written to Redis
for them. The queue gauges are read from Redis when Prometheus scrapes, with
cheap read-only commands on the index keys (SMEMBERS ``queues``; per queue
ZCARD and the head of ``ready:<queue>``; ZCARD of ``scheduled`` and
``inflight``). Scheduled and in-flight jobs are kept in one sorted set per
namespace, not per queue, so those two gauges are per namespace.

Metrics (labels in braces):

- ``zizq_jobs_completed_total`` / ``zizq_jobs_failed_total`` (a retry is
  scheduled) / ``zizq_jobs_dead_total`` / ``zizq_jobs_timed_out_total``
  {namespace, queue, type}: outcomes of this process's handler runs. A timed
  out job is also counted as failed or dead.
- ``zizq_job_duration_seconds`` {namespace, queue, type}: handler run time
  (dequeue middleware included), a histogram.
- ``zizq_jobs_recovered_total`` / ``zizq_jobs_poisoned_total`` {namespace}:
  jobs of lost workers this process's heartbeats handed back, or failed as
  poison pills (the heartbeat reports counts only, not types or queues).
- ``zizq_queue_ready_jobs`` {namespace, queue}: ready jobs.
- ``zizq_queue_oldest_ready_age_seconds`` {namespace, queue}: age of the next
  job to run (the head of the ready set: the oldest job of the most urgent
  priority present), from the time in its id, i.e. since it was enqueued.
- ``zizq_scheduled_jobs`` / ``zizq_in_flight_jobs`` {namespace}.
- ``zizq_limit_running_jobs`` / ``zizq_limit_waiting_jobs`` {namespace,
  limit}: jobs in flight under each limit (every key), and ready jobs the
  latest take that met the limit passed over for want of room (HKEYS
  ``limits``, HGETALL ``limitwait``; per limit HVALS ``limit:<name>``).
- ``zizq_redis_up`` {namespace}: 1 when the last scrape could read Redis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zizq import connect, events
from zizq.errors import JobTimeout, ValidationError, ZizqError

if TYPE_CHECKING:
    from zizq.client.aio import AsyncClient
    from zizq.client.sync import Client
    from zizq.worker.worker import Worker

log = logging.getLogger("zizq.metrics")
LABELS = ("namespace", "queue", "type")


def id_time_ms(job_id: str) -> int:
    """The creation time (ms since the epoch) in a SCRU128 id."""
    return int(job_id, 36) >> 80


class _JobCounters:
    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=registry)

        self.completed = counter("zizq_jobs_completed", "Jobs whose handler returned (acked in batches).")
        self.failed = counter("zizq_jobs_failed", "Jobs whose handler failed, with a retry scheduled.")
        self.dead = counter("zizq_jobs_dead", "Jobs whose handler failed for the last time (now dead).")
        self.timed_out = counter("zizq_jobs_timed_out", "Jobs whose handler ran past its timeout.")
        self.duration = Histogram(
            "zizq_job_duration_seconds", "Handler run time in seconds.", LABELS, registry=registry
        )

    def on_end(self, event: events.JobEvent) -> None:
        labels = (event.namespace, event.job.queue, event.job.type)
        if event.outcome == "completed":
            self.completed.labels(*labels).inc()
        elif event.outcome == "failed":
            self.failed.labels(*labels).inc()
        elif event.outcome == "dead":
            self.dead.labels(*labels).inc()
        if isinstance(event.error, JobTimeout):
            self.timed_out.labels(*labels).inc()
        if event.duration is not None:
            self.duration.labels(*labels).observe(event.duration)


class _RedisCollector(Collector):
    """Reads the queue gauges from Redis at scrape time."""

    def __init__(self, client: Client | AsyncClient, workers: Sequence[Worker]) -> None:
        assert client.url is not None
        # The client's own way to Redis (Cluster, Sentinel, TLS, ACL user).
        options = {**client.connect_options, "socket_timeout": 5, "socket_connect_timeout": 5}
        self.redis = connect.sync_redis(client.url, **options)
        self.namespace = client.namespace
        self.prefix = client.core.prefix
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        ns = self.namespace
        recovered = CounterMetricFamily(
            "zizq_jobs_recovered", "Jobs of lost workers handed back by this process.", labels=["namespace"]
        )
        recovered.add_metric([ns], sum(w.stats.recovered for w in self.workers))
        poisoned = CounterMetricFamily(
            "zizq_jobs_poisoned", "Jobs of lost workers failed as poison pills by this process.", labels=["namespace"]
        )
        poisoned.add_metric([ns], sum(w.stats.poisoned for w in self.workers))
        yield recovered
        yield poisoned
        up = GaugeMetricFamily("zizq_redis_up", "1 when this scrape could read Redis.", labels=["namespace"])
        try:
            gauges = list(self._gauges())
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics: cannot read redis (%s)", exc)
            up.add_metric([ns], 0)
            yield up
            return
        up.add_metric([ns], 1)
        yield up
        yield from gauges

    def _gauges(self) -> Iterator[Metric]:
        p, ns = self.prefix, self.namespace
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(p + "queues")
        pipe.zcard(p + "scheduled")
        pipe.zcard(p + "inflight")
        queues_raw, scheduled, inflight = pipe.execute()
        sec, usec = self.redis.time()  # apart: a key-less command in a Cluster pipeline has no slot
        now_ms = int(sec) * 1000 + int(usec) // 1000
        queues = sorted(q.decode() for q in queues_raw)
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.zcard(p + "ready:" + q)
            pipe.zrange(p + "ready:" + q, 0, 0)
        replies: list[Any] = pipe.execute() if queues else []
        ready = GaugeMetricFamily("zizq_queue_ready_jobs", "Ready jobs in the queue.", labels=["namespace", "queue"])
        age = GaugeMetricFamily(
            "zizq_queue_oldest_ready_age_seconds",
            "Seconds since the next job to run (head of the ready set) was enqueued; 0 when none is ready.",
            labels=["namespace", "queue"],
        )
        for i, q in enumerate(queues):
            count, head = replies[2 * i], replies[2 * i + 1]
            ready.add_metric([ns, q], count)
            seconds = 0.0
            if head:
                try:
                    seconds = max(0.0, (now_ms - id_time_ms(head[0].decode())) / 1000)
                except ValueError:  # an id not in SCRU128 form
                    seconds = 0.0
            age.add_metric([ns, q], seconds)
        yield ready
        yield age
        yield _one("zizq_scheduled_jobs", "Scheduled jobs, every queue of the namespace.", ns, scheduled)
        yield _one("zizq_in_flight_jobs", "In-flight jobs, every queue of the namespace.", ns, inflight)
        yield from self._limit_gauges()

    def _limit_gauges(self) -> Iterator[Metric]:
        p, ns = self.prefix, self.namespace
        names = sorted(n.decode() for n in self.redis.hkeys(p + "limits"))
        waits: dict[str, int] = {}
        for field, n in self.redis.hgetall(p + "limitwait").items():
            name = field.decode().partition(",")[0]  # "<limit>,<queue>"
            waits[name] = waits.get(name, 0) + int(n)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hvals(p + "limit:" + name)
        replies: list[Any] = pipe.execute() if names else []
        running = GaugeMetricFamily(
            "zizq_limit_running_jobs", "Jobs in flight under the limit, every key.", labels=["namespace", "limit"]
        )
        waiting = GaugeMetricFamily(
            "zizq_limit_waiting_jobs",
            "Ready jobs the latest take that met the limit passed over for want of room.",
            labels=["namespace", "limit"],
        )
        for i, name in enumerate(names):
            running.add_metric([ns, name], sum(int(v) for v in replies[i]))
            waiting.add_metric([ns, name], waits.get(name, 0))
        yield running
        yield waiting


def _one(name: str, doc: str, namespace: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["namespace"])
    g.add_metric([namespace], value)
    return g


@dataclass
class MetricsServer:
    """A running metrics endpoint; :meth:`close` stops it."""

    port: int
    registry: CollectorRegistry
    server: WSGIServer
    thread: threading.Thread
    _unsubscribe: Any
    _collector: _RedisCollector

    def close(self) -> None:
        self._unsubscribe()
        self.server.shutdown()
        self.server.server_close()
        self._collector.redis.close()


def serve_metrics(
    port: int, client: Client | AsyncClient, workers: Sequence[Worker] = (), *, addr: str = "0.0.0.0"
) -> MetricsServer:
    """Serve Prometheus metrics on ``http://addr:port/metrics`` from a thread.

    ``client`` (made with ``from_url``) names the Redis and namespace the
    queue gauges are read from; ``workers`` are the workers of this process
    whose recoveries are reported. Job counts come from every worker in the
    process. ``port`` 0 picks a free port (see ``.port``).
    """
    if client.url is None:
        raise ZizqError("give serve_metrics a client made with from_url()")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValidationError(f"metrics port {port!r} is not an integer in 0..65535")
    registry = CollectorRegistry()
    counters = _JobCounters(registry)
    collector = _RedisCollector(client, workers)
    registry.register(collector)
    server, thread = start_http_server(port, addr, registry=registry)
    host = f"[{addr}]" if ":" in addr else addr
    for worker in workers:  # their start lines say where
        worker.metrics_url = f"http://{host}:{server.server_port}/metrics"
    unsubscribe = events.subscribe("job_end", counters.on_end)
    return MetricsServer(server.server_port, registry, server, thread, unsubscribe, collector)
