"""A worker's counts since it started (:class:`WorkerStats`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WorkerStats:
    """Counts since the worker started. ``completed`` and ``failed`` count
    outcomes Redis has recorded (the ack or fail script returned), so when
    ``completed`` reaches n, n jobs are done in Redis too."""

    taken: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    # Acks and fails Redis refused: the job was deleted, recovered after a lost
    # lease, or (a call sent again after its reply was lost) already done.
    refused_acks: int = 0
    recovered: int = 0  # jobs of lost workers this worker's heartbeats handed back
    poisoned: int = 0  # jobs of lost workers failed as poison pills (zizq.WorkerLost)
    leases_lost: int = 0
