"""Cron: groups and entries, the workers' tick, exactly one enqueue per due run."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis

import zizq
from zizq._protocol.cron import CronCore
from zizq._protocol.scripts import script
from zizq.cron import next_after
from zizq.worker.cron_tick import CronStats, cron_tick

from .conftest import RedisServer, take, wait_for
from .history_checks import CLAIMED


class Report(zizq.JobKind):
    NAME = "report"
    QUEUE = "reports"
    PRIORITY = 7
    day: str


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def test_next_after_reads_5_and_6_fields_in_a_time_zone() -> None:
    now = ms("2024-03-30T12:00:00+00:00")
    # 02:30 Berlin does not exist on 2024-03-31 (clocks jump 02:00 -> 03:00).
    assert next_after("30 2 * * *", "Europe/Berlin", now) == ms("2024-03-31T03:00:00+02:00")
    assert next_after("30 2 * * *", "UTC", now) == ms("2024-03-31T02:30:00+00:00")
    assert next_after("*/15 * * * * *", "UTC", now) == now + 15_000  # strictly after
    assert next_after("@daily", "America/New_York", now) == ms("2024-03-31T00:00:00-04:00")
    assert next_after("0 0 30 2 *", "UTC", now) is None  # 30 February never comes


async def test_bad_input_is_refused_before_anything_is_written(api: Any, r: redis.Redis, namespace: str) -> None:
    good = zizq.CronEntry("e", "* * * * *", Report(day="x"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"entries": [zizq.CronEntry("e", "61 * * * *", Report(day="x"))]}, "61 \\* \\* \\* \\*"),
        ({"entries": [zizq.CronEntry("e", "* * * *", Report(day="x"))]}, "is not valid"),
        ({"entries": [zizq.CronEntry("e", "* * * * *", Report(day="x"), timezone="Mars/Base")]}, "Mars/Base"),
        ({"entries": [good], "timezone": "Nowhere"}, "Nowhere"),
        ({"entries": [zizq.CronEntry("bad,name", "* * * * *", Report(day="x"))]}, "bad,name"),
        ({"entries": [zizq.CronEntry("e", "* * * * *", zizq.Enqueue(Report(day="x"), delay=5))]}, "ready_at or delay"),
        ({"entries": [zizq.CronEntry("e", "* * * * *", zizq.Enqueue(Report(day="x"), priority=70000))]}, "70000"),
        ({"entries": [good, good]}, "given twice"),
    ]
    for kwargs, match in cases:
        with pytest.raises(zizq.ValidationError, match=match):
            await api.replace_cron("g", **kwargs)
    with pytest.raises(zizq.ValidationError, match="bad group"):
        await api.replace_cron("bad group}", [good])
    assert r.keys(f"{{{namespace}}}:*") == []
    with pytest.raises(zizq.CronNotFound):
        await api.get_cron("g")
    with pytest.raises(zizq.CronNotFound):
        await api.pause_cron("g")


async def test_replace_is_idempotent_and_keeps_unchanged_entries(api: Any) -> None:
    entries = [
        zizq.CronEntry("nightly", "0 3 * * *", Report(day="today"), timezone="Europe/Berlin"),
        zizq.CronEntry("often", "*/5 * * * *", zizq.Enqueue.raw("ping", {"n": 1}, queue="q", unique_key="ping")),
    ]
    group = await api.replace_cron("billing", entries, timezone="America/New_York")
    assert group.name == "billing" and group.timezone == "America/New_York" and not group.paused
    nightly, often = group.entries
    assert (nightly.name, nightly.timezone, often.timezone) == ("nightly", "Europe/Berlin", "America/New_York")
    assert nightly.job["type"] == "report" and nightly.job["queue"] == "reports" and nightly.job["priority"] == 7
    assert often.job["unique_key"] == "ping" and often.job["payload"] == '{"n":1}'
    assert nightly.next_enqueue_at is not None and often.next_enqueue_at is not None
    assert nightly.last_enqueue_at is None

    assert await api.pause_cron_entry("billing", "nightly") is True
    assert await api.pause_cron_entry("billing", "nightly") is False
    again = await api.replace_cron("billing", entries, timezone="America/New_York")
    assert again.entries[0].paused and again.entries[0].paused_at is not None  # state kept
    assert again.entries == [*group.entries[:0], again.entries[0], group.entries[1]]

    # Changing an entry replaces it (fresh state); a missing entry is deleted.
    changed = [zizq.CronEntry("nightly", "0 4 * * *", Report(day="today"), timezone="Europe/Berlin")]
    third = await api.replace_cron("billing", changed, timezone="America/New_York")
    assert [e.name for e in third.entries] == ["nightly"]
    assert third.entries[0].expression == "0 4 * * *" and not third.entries[0].paused

    with pytest.raises(zizq.CronEntryExists):
        await api.add_cron_entry("billing", changed[0])
    added = await api.add_cron_entry("billing", zizq.CronEntry("second", "@hourly", Report(day="h")))
    assert added.timezone == "America/New_York"  # inherited from the group
    put = await api.put_cron_entry("other", zizq.CronEntry("x", "@daily", Report(day="d")))
    assert put.group == "other" and put.timezone == "UTC"
    assert [g.name for g in await api.list_crons()] == ["billing", "other"]
    assert (await api.get_cron_entry("billing", "second")).expression == "@hourly"

    assert await api.pause_cron("billing") is True
    assert (await api.get_cron("billing")).paused
    assert await api.resume_cron("billing") is True
    group = await api.get_cron("billing")
    assert not group.paused and group.resumed_at is not None
    assert await api.delete_cron_entry("billing", "second") is True
    assert await api.delete_cron_entry("billing", "second") is False
    assert await api.delete_cron("other") is True
    assert await api.delete_all_crons() == 1
    assert await api.list_crons() == []


async def _set_next(r: redis.Redis, namespace: str, group: str, entry: str, at_ms: int) -> None:
    r.zadd(f"{{{namespace}}}:cron:next", {f"{group},{entry}": at_ms})


async def test_tick_enqueues_the_template_and_collapses_missed_runs(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "zizq.cron")
    entry = zizq.CronEntry("daily", "0 0 * * *", zizq.Enqueue(Report(day="d"), priority=3, retry_limit=2))
    await aclient.replace_cron("g", [entry])
    # The workers were down for three days: the run that was due three days ago is due now.
    three_days_ago = ms("2024-01-01T00:00:00+00:00")
    await _set_next(r, namespace, "g", "daily", three_days_ago)
    assert await cron_tick(aclient) == 0.0
    jobs = cast(list[bytes], r.zrange(f"{{{namespace}}}:ready:reports", 0, -1))
    assert len(jobs) == 1
    job = await aclient.get_job(jobs[0].decode())
    assert (job.type, job.queue, job.priority, job.retry_limit) == ("report", "reports", 3, 2)
    assert job.payload == {"day": "d"}
    # The claim's DEBUG line, the fault-history checker's evidence of the due time each run took.
    [line] = [rec.getMessage() for rec in caplog.records if "claimed" in rec.getMessage()]
    assert f"cron entry g,daily: run due at {three_days_ago} claimed, enqueued as job {job.id} (read at " in line
    [(member, due, job_id, read)] = CLAIMED.findall(f"2026-12-07 10:00:00,000 DEBUG zizq.cron: {line}")
    assert (member, int(due), job_id) == ("g,daily", three_days_ago, job.id) and int(read) > three_days_ago
    state = (await aclient.get_cron("g")).entries[0]
    assert state.last_enqueue_at is not None and state.next_enqueue_at is not None
    assert state.next_enqueue_at > state.last_enqueue_at  # the next midnight, not a missed one
    wait = await cron_tick(aclient)  # nothing more is due: one enqueue for all the missed runs
    assert wait is not None and wait > 0
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 1
    assert r.hlen(f"{{{namespace}}}:cron:sent") == 0  # confirmed


async def test_paused_entries_advance_without_enqueueing(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str
) -> None:
    await aclient.replace_cron("g", [zizq.CronEntry("e", "0 0 * * *", Report(day="d"))])
    await aclient.pause_cron("g")
    await _set_next(r, namespace, "g", "e", 1000)
    await cron_tick(aclient)
    state = (await aclient.get_cron("g")).entries[0]
    assert state.next_enqueue_at is not None and state.next_enqueue_at > 1000 and state.last_enqueue_at is None
    await aclient.resume_cron("g")
    await cron_tick(aclient)  # no catch-up on resume
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 0


async def test_unique_key_templates_follow_unique_rules(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str
) -> None:
    entry = zizq.CronEntry("e", "0 0 * * *", zizq.Enqueue(Report(day="d"), unique_key="report-daily"))
    await aclient.replace_cron("g", [entry])
    for _ in range(2):
        await _set_next(r, namespace, "g", "e", 1000)
        await cron_tick(aclient)
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 1  # the second run was a duplicate


@pytest.mark.parametrize("case", ["unique key", "short completed retention"])
async def test_a_claimed_run_is_enqueued_in_its_claim_and_never_again(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str, case: str
) -> None:
    options: dict[str, Any] = {"unique_key": "daily"} if case == "unique key" else {"retention": zizq.Retention(1)}
    await aclient.replace_cron("g", [zizq.CronEntry("e", "0 0 * * *", zizq.Enqueue(Report(day="d"), **options))])
    cc = CronCore(aclient.core)
    await _set_next(r, namespace, "g", "e", 1000)
    job_id = aclient.core.ids.generate()
    # A worker claims the run and dies at once: the claim made the job.
    [(outcome, created)] = await aclient.run(cc.fire([("g,e", 1000, None, job_id)]))
    assert (outcome, created) == (1, job_id)
    assert r.zrange(f"{{{namespace}}}:ready:reports", 0, -1) == [job_id.encode()]
    assert r.zcard(f"{{{namespace}}}:cron:pending") == 0  # nothing left to send again
    # The claim sent again (its reply was lost) claims nothing.
    [(outcome, _)] = await aclient.run(cc.fire([("g,e", 1000, None, aclient.core.ids.generate())]))
    assert outcome == 0
    # The job runs and is gone (its unique key released, or purged), and
    # the done window has passed: later ticks still make no second job.
    [job] = await take(aclient, queues=("reports",))
    assert job.id == job_id and await aclient.run(aclient.core.ack("w1", [job.id])) == []
    if case == "short completed retention":

        async def purged() -> bool:
            return await aclient.purge_expired() == 1

        await wait_for(purged, 5)
    for key in r.scan_iter(f"{{{namespace}}}:done:*"):
        r.delete(key)
    await cron_tick(aclient)
    await cron_tick(aclient)
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 0 and r.hlen(f"{{{namespace}}}:jobs") == 0


async def test_a_claim_an_older_worker_left_pending_is_sent_again_once(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str
) -> None:
    # Workers before claim and enqueue were one step recorded a pending
    # enqueue at the claim and enqueued it afterwards: one that died in
    # between left this behind, and a tick sends it with the same id.
    await aclient.replace_cron("g", [zizq.CronEntry("e", "0 0 * * *", Report(day="d"))])
    definition = cast(bytes, r.hget(f"{{{namespace}}}:cron:entries:g", "e")).decode()
    job_id = aclient.core.ids.generate()
    record = {"member": "g,e", "due": "1000", "definition": definition}
    r.zadd(f"{{{namespace}}}:cron:pending", {job_id: 1})
    r.hset(f"{{{namespace}}}:cron:sent", job_id, json.dumps(record))
    await cron_tick(aclient)
    assert r.zrange(f"{{{namespace}}}:ready:reports", 0, -1) == [job_id.encode()]
    assert r.zcard(f"{{{namespace}}}:cron:pending") == 0 and r.hlen(f"{{{namespace}}}:cron:sent") == 0
    # Sent once more (say the older worker had enqueued before dying): the id is recognised.
    template = (await aclient.get_cron("g")).entries[0].job
    assert await aclient.run(CronCore(aclient.core).enqueue(job_id, template)) == 2
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 1


async def test_fire_enqueues_as_enqueue_does_or_says_why_not(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str
) -> None:
    template = zizq.Enqueue(Report(day="d"), unique_key="k", priority=3)
    await aclient.replace_cron("g", [zizq.CronEntry("e", "0 0 * * *", template)])
    cc = CronCore(aclient.core)
    holder = await aclient.enqueue(Report(day="x"), unique_key="k")
    await _set_next(r, namespace, "g", "e", 1000)
    [(outcome, detail)] = await aclient.run(cc.fire([("g,e", 1000, 2000, aclient.core.ids.generate())]))
    assert (outcome, detail) == (3, holder.id)  # a duplicate by unique key: nothing made
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 1
    # A definition written by hand whose template enqueue refuses: claimed,
    # nothing written, and why.
    bad = {"expression": "0 0 * * *", "timezone": "UTC", "job": {"type": "t", "queue": "q", "priority": 70000}}
    r.hset(f"{{{namespace}}}:cron:entries:g", "e", json.dumps(bad))
    [(outcome, detail)] = await aclient.run(cc.fire([("g,e", 2000, 3000, aclient.core.ids.generate())]))
    assert outcome == 4 and "priority 70000 is not an integer in 0..65535" in detail
    assert r.zscore(f"{{{namespace}}}:cron:next", "g,e") == 3000 and r.hlen(f"{{{namespace}}}:jobs") == 1
    with pytest.raises(zizq.ValidationError, match="N 101 is above 100"):
        await aclient.run(cc.fire([("g,e", 3000, None, f"id{i}") for i in range(101)]))


@pytest.mark.slow
async def test_four_workers_enqueue_each_due_run_exactly_once(
    client: zizq.Client, r: redis.Redis, namespace: str
) -> None:
    client.replace_cron(
        "fast",
        [
            zizq.CronEntry("every_second", "* * * * * *", zizq.Enqueue.raw("tick", 1, queue="cron1")),
            zizq.CronEntry("every_2s", "*/2 * * * * *", zizq.Enqueue.raw("tick", 2, queue="cron2")),
        ],
    )
    before = {e.name: e.next_enqueue_at for e in client.get_cron("fast").entries}
    # The workers serve another queue: the cron jobs stay ready, to be counted.
    workers = [zizq.Worker(client, zizq.Router(), queues=["other"], max_idle=0.5) for _ in range(4)]
    tasks = [asyncio.create_task(w.run_async()) for w in workers]
    await asyncio.sleep(6)
    for w in workers:
        w.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    after = {e.name: e.next_enqueue_at for e in client.get_cron("fast").entries}
    for name, queue, period in (("every_second", "cron1", 1000), ("every_2s", "cron2", 2000)):
        start, end = before[name], after[name]
        assert start is not None and end is not None
        runs = (end - start) // period  # due times that passed while the workers ran
        enqueued = r.zcard(f"{{{namespace}}}:ready:{queue}")
        assert runs >= 2
        # Never twice; once each unless a tick came more than a period late (runs collapse).
        assert runs - 1 <= enqueued <= runs, (name, runs, enqueued)
    assert sum(w.cron_stats.enqueued for w in workers) == r.zcard(f"{{{namespace}}}:ready:cron1") + r.zcard(
        f"{{{namespace}}}:ready:cron2"
    )


def test_cli_cron_list_pause_resume_delete(client: zizq.Client, redis_server: RedisServer, namespace: str) -> None:
    from .test_cli import zizq_cli

    client.replace_cron("nightly", [zizq.CronEntry("report", "0 3 * * *", Report(day="d"))], timezone="Europe/Paris")
    env = {"ZIZQ_REDIS_URL": redis_server.url}

    def cli(*args: str) -> str:
        out = zizq_cli("cron", *args, "--namespace", namespace, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    listing = cli("list")
    assert "nightly timezone=Europe/Paris" in listing and "report  '0 3 * * *' Europe/Paris" in listing
    assert "type=report queue=reports" in listing and "last=-" in listing
    assert re.search(r"next=20\d\d-\d\d-\d\d 0[1-3]:00:00 UTC ", listing), listing  # 03:00 in Paris
    assert cli("pause", "nightly", "report") == "cron entry 'report' of group 'nightly' paused\n"
    assert client.get_cron_entry("nightly", "report").paused
    assert cli("pause", "nightly") == "cron group 'nightly' paused\n"
    assert "nightly (paused)" in cli("list", "nightly") and "report (paused)" in cli("list")
    assert cli("resume", "nightly") == "cron group 'nightly' resumed\n"
    assert cli("resume", "nightly") == "cron group 'nightly' was already resumed\n"
    assert orjson.loads(cli("list", "--json"))[0]["name"] == "nightly"
    assert cli("delete", "nightly") == "cron group 'nightly' deleted\n"
    missing = zizq_cli("cron", "delete", "nightly", "--namespace", namespace, env=env)
    assert missing.returncode == 1 and "no cron group 'nightly'" in missing.stderr
    assert cli("list") == "no cron groups\n"
    helps = zizq_cli("worker", "--help").stdout
    assert "--no-cron" in helps and "--metrics-port" in helps


async def test_an_unreadable_definition_stops_only_its_own_entry(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str
) -> None:
    await aclient.replace_cron("g", [zizq.CronEntry("good", "0 0 * * *", Report(day="d"))])
    # A definition written by hand (another client, an old version) that
    # this worker cannot read, due now like the good one.
    r.hset(f"{{{namespace}}}:cron:entries:g", "bad", "not json")
    await _set_next(r, namespace, "g", "bad", 1000)
    await _set_next(r, namespace, "g", "good", 1000)
    await cron_tick(aclient)
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 1  # the good entry ran
    # Left due for the other workers (they may read it), and not looked at
    # again and again by this one.
    assert r.zscore(f"{{{namespace}}}:cron:next", "g,bad") == 1000
    wait = await cron_tick(aclient)
    assert wait is not None and wait > 0


async def test_a_zone_this_host_lacks_does_not_unschedule_the_entry(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    entry = zizq.CronEntry("e", "0 0 * * *", Report(day="d"), timezone="Europe/Berlin")
    await aclient.replace_cron("g", [entry])
    # Registered by a host whose tzdata knows the zone; this one's does not.
    key = f"{{{namespace}}}:cron:entries:g"
    definition = cast(bytes, r.hget(key, "e")).decode()
    r.hset(key, "e", definition.replace("Europe/Berlin", "Mars/Base"))
    await _set_next(r, namespace, "g", "e", 1000)
    stats = CronStats()
    for _ in range(3):
        wait = await cron_tick(aclient, stats)
        assert wait is not None and wait >= 1.0  # no busy loop
    assert r.zscore(f"{{{namespace}}}:cron:next", "g,e") == 1000  # still due, for a host that knows the zone
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 0
    errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    assert len(errors) == 1 and "g,e cannot be scheduled by this worker" in errors[0] and "Mars/Base" in errors[0]
    # A host that knows the zone runs it.
    r.hset(key, "e", definition)
    assert await cron_tick(aclient, stats) == 0.0
    assert r.zcard(f"{{{namespace}}}:ready:reports") == 1 and not stats.failing


async def test_replace_puts_an_unchanged_entry_back_on_the_schedule(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str
) -> None:
    entries = [zizq.CronEntry("e", "0 0 * * *", Report(day="d"))]
    first = (await aclient.replace_cron("g", entries)).entries[0]
    await aclient.pause_cron_entry("g", "e")
    r.zrem(f"{{{namespace}}}:cron:next", "g,e")  # taken off by an older worker's local error
    again = (await aclient.replace_cron("g", entries)).entries[0]
    assert again.next_enqueue_at == first.next_enqueue_at and again.paused  # back, its state kept


async def test_fire_checks_every_next_run_before_claiming_any(
    aclient: zizq.AsyncClient, r: redis.Redis, namespace: str
) -> None:
    await aclient.replace_cron("g", [zizq.CronEntry("e", "0 0 * * *", Report(day="d"))])
    await _set_next(r, namespace, "g", "e", 1000)
    before = r.zscore(f"{{{namespace}}}:cron:next", "g,e")
    args: list[str | int] = [2, "g,e", 1000, 5000, "id1", "g,other", 1000, "soon", "id2"]
    with pytest.raises(redis.ResponseError, match="next run soon"):
        r.eval(script("cron_fire").source, 1, "{" + namespace + "}:", *args)
    assert r.zscore(f"{{{namespace}}}:cron:next", "g,e") == before  # nothing claimed
    assert r.zcard(f"{{{namespace}}}:cron:pending") == 0


def _runs(expression: str, timezone: str, start: str, end: str) -> list[int]:
    """Every run of an entry after ``start`` up to ``end``, in ms."""
    runs, at, stop = [], ms(start), ms(end)
    while (nxt := next_after(expression, timezone, at)) is not None and nxt <= stop:
        runs.append(nxt)
        at = nxt
    return runs


# (zone, the day clocks go forward, the day they go back, a time of day in
# the skipped hour, one in the repeated hour; the jump's end; UTC)
CLOCK_CHANGES = [
    ("Europe/Berlin", "2024-03-31", "2024-10-27", "02:30", "02:30", "2024-03-31T01:00:00+00:00"),
    ("America/New_York", "2024-03-10", "2024-11-03", "02:30", "01:30", "2024-03-10T07:00:00+00:00"),
]


@pytest.mark.parametrize(("zone", "spring", "autumn", "skipped", "repeated", "jump_end"), CLOCK_CHANGES)
@pytest.mark.parametrize("seconds", [False, True], ids=["5 fields", "6 fields"])
def test_fixed_times_run_once_on_both_clock_changes(
    zone: str, spring: str, autumn: str, skipped: str, repeated: str, jump_end: str, seconds: bool
) -> None:
    def expression(time_of_day: str) -> str:
        hour, minute = time_of_day.split(":")
        return ("0 " if seconds else "") + f"{int(minute)} {int(hour)} * * *"

    # A time skipped in spring runs once, right when the jump ends.
    runs = _runs(expression(skipped), zone, f"{spring}T00:00:00+00:00", f"{spring}T23:59:00+00:00")
    assert runs == [ms(jump_end)]
    # A time in the repeated hour runs once, at its first pass.
    first_pass = datetime.fromisoformat(f"{autumn}T{repeated}").replace(tzinfo=ZoneInfo(zone), fold=0)
    runs = _runs(expression(repeated), zone, f"{autumn}T00:00:00+00:00", f"{autumn}T23:59:00+00:00")
    assert runs == [round(first_pass.timestamp() * 1000)]
    # Read during the second pass, the next run is the next day's.
    second_pass = round(first_pass.replace(fold=1).timestamp() * 1000) - 1
    assert next_after(expression(repeated), zone, second_pass) == runs[0] + 86_400_000 + 3_600_000


@pytest.mark.parametrize(("zone", "spring", "autumn", "skipped", "repeated", "jump_end"), CLOCK_CHANGES)
@pytest.mark.parametrize(
    ("expression", "period_ms"),
    [
        ("*/15 * * * *", 900_000),
        ("0 */15 * * * *", 900_000),
        ("0 * * * *", 3_600_000),
        ("0 0 * * * *", 3_600_000),
        ("@hourly", 3_600_000),
    ],
)
def test_interval_entries_step_in_real_time_across_clock_changes(
    zone: str, spring: str, autumn: str, skipped: str, repeated: str, jump_end: str, expression: str, period_ms: int
) -> None:
    for day in (spring, autumn):
        runs = _runs(expression, zone, f"{day}T00:00:00+00:00", f"{day}T12:00:00+00:00")
        assert runs[0] == ms(f"{day}T00:00:00+00:00") + period_ms
        assert [b - a for a, b in itertools.pairwise(runs)] == [period_ms] * (len(runs) - 1), (day, expression)
        assert runs[-1] == ms(f"{day}T12:00:00+00:00")
        for a, b in itertools.pairwise(runs):  # read between two runs, too
            assert next_after(expression, zone, a + period_ms // 2) == b
