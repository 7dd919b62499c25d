"""`zizq jobs ...`, `zizq queues` and `zizq reset`, run as real subprocesses."""

from __future__ import annotations

import re

import orjson

import zizq

from .conftest import RedisServer, take
from .test_cli import zizq_cli

# Times as every command shows them (zizq.cli.format): a recent one, and one in full.
AGO = r"(\d\.\d s|\d+ s|\d+ min( \d+ s)?) ago"
STAMP = r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def run(server: RedisServer, ns: str, *args: str) -> tuple[int, str, str]:
    out = zizq_cli(*args, "--url", server.url, "--namespace", ns)
    return out.returncode, out.stdout, out.stderr


async def test_jobs_commands(redis_server: RedisServer, namespace: str, client: zizq.Client) -> None:
    made = client.enqueue_many(
        [zizq.Enqueue.raw("mail", {"to": f"u{i}@x"}, queue="emails", priority=i) for i in range(5)]
        + [zizq.Enqueue.raw("report", {"n": i}, delay=600) for i in range(3)]
    )
    ids = sorted(j.id for j in made)
    s, ns = redis_server, namespace

    code, out, _ = run(s, ns, "jobs", "list", "--json", "--limit", "3")
    page = orjson.loads(out)
    assert code == 0 and [j["id"] for j in page["jobs"]] == ids[:3] and page["next"] == ids[2]
    assert page["jobs"][0]["payload"] == {"to": "u0@x"}
    code, out, _ = run(s, ns, "jobs", "list", "--json", "--after", ids[2], "--order", "asc")
    assert [j["id"] for j in orjson.loads(out)["jobs"]] == ids[3:]
    code, out, _ = run(s, ns, "jobs", "list", "--type", "mail", "--priority", "1..2", "--jq", '.to == "u2@x"')
    assert code == 0 and made[2].id in out and made[1].id not in out and "ready" in out
    assert re.search(rf"{made[2].id} +ready +emails +mail +2 +0 +{AGO} *\n", out), out
    code, out, _ = run(s, ns, "jobs", "list", "--status", "scheduled")
    assert code == 0 and re.search(rf"{made[5].id} +scheduled .* in (9 min \d+ s|10 min) *\n", out), out
    code, out, _ = run(s, ns, "jobs", "count", "--status", "scheduled")
    assert (code, out.strip()) == (0, "3")
    code, out, _ = run(s, ns, "jobs", "count", "--json", "--queue", "emails", "--attempts", "0")
    assert orjson.loads(out) == {"count": 5}

    code, out, _ = run(s, ns, "jobs", "get", made[0].id, "--json")
    assert code == 0 and orjson.loads(out)["payload"] == {"to": "u0@x"}
    code, out, _ = run(s, ns, "jobs", "get", made[0].id)
    assert code == 0 and "emails" in out and "u0@x" in out
    assert re.search(rf"ready_at +{STAMP} \({AGO}\), {made[0].ready_at} ms *\n", out), out
    code, _, err = run(s, ns, "jobs", "get", "0" * 25)
    assert code == 3 and "no job with id" in err

    code, out, _ = run(s, ns, "jobs", "patch", "--type", "mail", "--set", "priority=7", "--set", "queue=mails")
    assert (code, out.strip()) == (0, "5 jobs patched")
    assert client.count_jobs(queue="mails", priority=7) == 5
    code, out, _ = run(s, ns, "jobs", "patch", made[0].id, "--set", "ready_at=now", "--json")
    assert code == 0 and orjson.loads(out)["queue"] == "mails"
    code, _, err = run(s, ns, "jobs", "patch", "--type", "mail", "--set", "colour=red")
    assert code == 1 and "'colour'" in err
    code, _, err = run(s, ns, "jobs", "list", "--priority", "5..x")
    assert code == 1 and "'x' is not a whole number" in err
    code, _, err = run(s, ns, "jobs", "list", "--limit", "2001")
    assert code == 1 and "limit 2001" in err
    code, _, err = run(s, ns, "jobs", "list", "--jq", ".a >")
    assert code == 1 and "does not compile" in err
    code, _, err = run(s, ns, "jobs", "list", "--status", "bogus")
    assert code == 1 and "status 'bogus'" in err

    # A dead job: errors, then retry by filter.
    [job] = await take(client_api(client), 1, ("mails",))
    client.run(client.core.fail("w1", job.id, message="boom", error_type="KeyError", kill=True))
    code, out, _ = run(s, ns, "jobs", "errors", job.id, "--json")
    assert code == 0 and orjson.loads(out)[0]["message"] == "boom"
    code, out, _ = run(s, ns, "jobs", "errors", job.id)
    assert re.fullmatch(rf"attempt 1  failed {STAMP} \({AGO}\)  KeyError: boom\n", out), out
    code, _, err = run(s, ns, "jobs", "retry")  # every dead job: no terminal to confirm on
    assert code == 4 and "--yes" in err and client.get_job(job.id).status == "dead"
    code, out, _ = run(s, ns, "jobs", "retry", "--json", "--yes")
    assert (code, orjson.loads(out)) == (0, {"retried": 1})
    code, _, err = run(s, ns, "jobs", "retry", job.id)
    assert code == 1 and "only dead jobs" in err

    code, out, _ = run(s, ns, "queues", "--json")
    queues = {q["name"]: q for q in orjson.loads(out)}
    assert queues["mails"]["ready"] == 5 and queues["default"]["scheduled"] == 3
    code, out, _ = run(s, ns, "queues")
    assert code == 0 and "mails" in out and "SCHEDULED" in out

    code, out, _ = run(s, ns, "jobs", "delete", made[0].id)
    assert (code, out.strip()) == (0, "1 job deleted")
    code, _, _ = run(s, ns, "jobs", "delete", made[0].id)
    assert code == 3
    code, _, err = run(s, ns, "jobs", "delete")  # every job: no terminal to confirm on
    assert code == 4 and "--yes" in err and client.count_jobs() == 7
    code, out, _ = run(s, ns, "jobs", "delete", "--status", "scheduled", "--json")
    assert orjson.loads(out) == {"deleted": 3}

    code, _, err = run(s, ns, "reset")
    assert code == 4 and client.count_jobs() == 4
    code, _, err = run(s, ns, "reset", "--yes")  # the worker "w1" of take() holds a lease
    assert code == 1 and "hold a lease" in err
    code, out, _ = run(s, ns, "reset", "--yes", "--force")
    assert code == 0 and "keys deleted" in out and client.count_jobs() == 0


def client_api(client: zizq.Client) -> object:
    from .conftest import Awaited

    return Awaited(client)


def test_help_explains_filters_and_exit_codes() -> None:
    assert "--yes" in zizq_cli("jobs", "retry", "--help").stdout
    out = zizq_cli("jobs", "--help").stdout
    assert "3 no such job" in out and "4" in out
    out = zizq_cli("jobs", "list", "--help").stdout
    assert "A..B" in out and "--jq" in out and "--after" in out
    assert "--yes" in zizq_cli("reset", "--help").stdout and "--force" in zizq_cli("reset", "--help").stdout
    assert "Ctrl-C" in zizq_cli("top", "--help").stdout


async def test_get_shows_the_payload_as_json_and_the_last_error(
    redis_server: RedisServer, namespace: str, client: zizq.Client
) -> None:
    job = client.enqueue_raw("mail", {"to": "a@x", "urgent": True, "cc": None})
    [taken] = await take(client_api(client), 1)
    for message in ("first", "second"):
        client.run(client.core.fail("w1", taken.id, message=message, error_type="KeyError", retry_in_ms=0))
        await take(client_api(client), 1)
    code, out, err = run(redis_server, namespace, "jobs", "get", job.id)
    assert code == 0, err
    assert '"urgent": true' in out and '"cc": null' in out and "'to'" not in out  # JSON, not Python's repr
    assert "last error" in out and "attempt 2" in out and "KeyError: second" in out and "first" not in out
    assert re.search(rf"attempt 2  failed {STAMP} \({AGO}\)  KeyError: second\n", out), out


async def test_get_tells_a_job_deleted_as_it_finished_from_one_that_never_was(
    redis_server: RedisServer, namespace: str, client: zizq.Client
) -> None:
    job = client.enqueue_raw("mail", {})
    [taken] = await take(client_api(client), 1)
    assert client.run(client.core.ack("w1", [taken.id])) == []  # completed; retention 0: deleted at once
    code, out, err = run(redis_server, namespace, "jobs", "get", job.id)
    assert (code, out) == (3, "") and "Traceback" not in err
    assert err.startswith(f"zizq: error: job {job.id!r} finished (completed, or dead) within the last minute")
    assert "deleted at once" in err and "retention is 0" in err
    code, _, err = run(redis_server, namespace, "jobs", "get", "0" * 25)
    assert code == 3 and f"no job with id {'0' * 25!r}" in err


def test_an_unknown_option_shows_the_subcommands_usage() -> None:
    out = zizq_cli("jobs", "list", "--bogus")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("usage: zizq jobs list ") and "--status STATUS" in out.stderr
    assert out.stderr.rstrip().endswith("zizq jobs list: error: unrecognized arguments: --bogus")
    out = zizq_cli("enqueue", "t", "{}", "--bogus", "1")
    assert out.returncode == 2 and out.stderr.startswith("usage: zizq enqueue ")
    assert "zizq enqueue: error: unrecognized arguments: --bogus 1" in out.stderr
