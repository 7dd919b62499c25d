"""The dashboard's actions, each through the client's public methods, and
the ``web_action`` event each one emits for the app's audit log.

An action is a form: ``action`` names it, the other fields say on what.

==================  =================================================
``job.retry``       ``id``: a dead job back to ready
``job.delete``      ``id``
``job.patch``       ``id``; ``set_priority``, ``set_queue``, ``set_ready_at``
``job.cancel``      ``id``: a job that has not finished, dead now
``jobs.delete``     ``status`` and the filter fields (``queue``, ``type``,
                    ``priority``, ``jq``): every matching job
``jobs.retry``      the filter fields: every matching dead job
``jobs.patch``      ``status``, the filter fields and the ``set_`` fields
``jobs.cancel``     ``status`` (not finished) and the filter fields
``queue.pause``     ``name``; ``queue.resume`` likewise
``cron.pause``      ``group``, ``entry`` (empty: the whole group);
                    ``cron.resume`` likewise; ``cron.run`` enqueues one
                    run of the entry now
``limit.set``       ``name``; ``concurrency``, ``rate`` (empty: none),
                    ``per`` (seconds, default 1)
``limit.delete``    ``name``
==================  =================================================

Bulk actions run in the client's bounded batches (1,000 jobs a script
call), each batch checking the filter again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from zizq import events
from zizq._protocol.cron import CronCore
from zizq.client.aio import AsyncClient
from zizq.errors import ValidationError
from zizq.events import WebActionEvent
from zizq.filters import Filter
from zizq.job import validate_name
from zizq.limits import Limit
from zizq.options import PatchOptions

ACTIONS = (
    "job.retry",
    "job.delete",
    "job.patch",
    "job.cancel",
    "jobs.delete",
    "jobs.retry",
    "jobs.patch",
    "jobs.cancel",
    "queue.pause",
    "queue.resume",
    "cron.pause",
    "cron.resume",
    "cron.run",
    "limit.set",
    "limit.delete",
)
FILTER_FIELDS = ("status", "queue", "type", "priority", "jq")
PATCH_FIELDS = ("set_priority", "set_queue", "set_ready_at")
LIMIT_FIELDS = ("name", "concurrency", "rate", "per")


def whole(what: str, text: str) -> int:
    """A non-negative whole number from a form field."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValidationError(f"{what} {text!r} is not a whole number")
    return int(text)


def make_filter(params: dict[str, str]) -> Filter:
    """A Filter from form fields (empty ones left out)."""
    return Filter(**{k: v.strip() for k, v in params.items() if k in FILTER_FIELDS and v.strip()})


def _ready_at(text: str) -> datetime | None:
    """'now' (None: ready now), or an ISO date and time; without an offset
    it is UTC (the pages show times in UTC)."""
    if text.strip().lower() == "now":
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"ready time {text!r} is not 'now' or a date and time (2026-12-07T10:30)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def patch_options(form: dict[str, str]) -> PatchOptions:
    """The changes of a patch form: only the fields filled in."""
    out: PatchOptions = {}
    if form.get("set_priority", "").strip():
        out["priority"] = whole("priority", form["set_priority"])
    if form.get("set_queue", "").strip():
        out["queue"] = form["set_queue"].strip()
    if form.get("set_ready_at", "").strip():
        out["ready_at"] = _ready_at(form["set_ready_at"])
    if not out:
        raise ValidationError("a patch needs a new priority, queue or ready time")
    return out


def limit_of(form: dict[str, str]) -> Limit:
    """The Limit of a form: ``concurrency`` and ``rate`` (empty: none), ``per``
    in seconds (empty: 1)."""
    concurrency, rate = form.get("concurrency", "").strip(), form.get("rate", "").strip()
    per_text = form.get("per", "").strip() or "1"
    try:
        per = float(per_text)
    except ValueError:
        raise ValidationError(f"per {per_text!r} is not a number of seconds") from None
    return Limit(
        whole("concurrency", concurrency) if concurrency else None,
        whole("rate", rate) if rate else None,
        per,
    )


def _action(form: dict[str, str]) -> str:
    action = form.get("action", "")
    if action not in ACTIONS:
        raise ValidationError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    return action


def _bulk_filter(action: str, form: dict[str, str]) -> Filter:
    params = {k: form.get(k, "") for k in FILTER_FIELDS}
    if action == "jobs.retry":
        params["status"] = "dead"
    return make_filter(params)


@dataclass(frozen=True, slots=True)
class Preview:
    """What the confirmation page shows: the action in words, how many
    jobs it touches now (None: one named thing), and the fields the
    confirming form posts."""

    action: str
    text: str
    count: int | None
    fields: dict[str, str] = field(default_factory=dict)


def _describe(form: dict[str, str]) -> str:
    return ", ".join(f"{k} {form[k]}" for k in FILTER_FIELDS if form.get(k, "").strip()) or "no filter: every job"


async def preview(client: AsyncClient, form: dict[str, str]) -> Preview:
    """The confirmation of ``form``'s action; checks it as the action will."""
    action = _action(form)
    keep = {
        k: v
        for k, v in form.items()
        if k in ("action", "id", *FILTER_FIELDS, *PATCH_FIELDS, *LIMIT_FIELDS) and v.strip()
    }
    if action.startswith("job."):
        job = await client.get_job(form.get("id", ""))
        verb = action[4:]
        changes = f" ({_changes_text(patch_options(form))})" if action == "job.patch" else ""
        return Preview(action, f"{verb.capitalize()} job {job.id} ({job.type}, {job.status}){changes}", None, keep)
    if action.startswith("jobs."):
        f = _bulk_filter(action, form)
        if action == "jobs.retry":
            keep["status"] = "dead"
        changes = f" ({_changes_text(patch_options(form))})" if action == "jobs.patch" else ""
        count = await client.count_jobs(f)
        verb = action[5:].capitalize()
        return Preview(action, f"{verb} every job matching {_describe(keep)}{changes}", count, keep)
    if action == "limit.set":
        name = validate_name("limit name", form.get("name", "").strip())
        return Preview(action, f"Set limit {name} to {limit_of(form)}", None, keep)
    if action == "limit.delete":
        name = form.get("name", "")
        return Preview(action, f"Delete limit {name}: its jobs run unlimited from the next take", None, keep)
    raise ValidationError(f"action {action!r} needs no confirmation")


def _changes_text(options: PatchOptions) -> str:
    return ", ".join(f"{k} → {'now' if v is None else v}" for k, v in options.items())


def _target(action: str, form: dict[str, str]) -> str:
    if action.startswith("job."):
        return form.get("id", "")
    if action.startswith("jobs."):
        f = _bulk_filter(action, form)
        return orjson.dumps(f.as_dict(), option=orjson.OPT_SORT_KEYS).decode()
    if action.startswith(("queue.", "limit.")):
        return form.get("name", "")
    return f"{form.get('group', '')}/{form.get('entry', '')}".rstrip("/")


async def run(client: AsyncClient, form: dict[str, str], user: str) -> str:
    """Run ``form``'s action; emit its ``web_action`` event (also when it
    fails); return what was done, in words."""
    action = _action(form)
    target = _target(action, form)
    changes: dict[str, Any] = {}
    count = 0
    try:
        if action.endswith(".patch"):
            options = patch_options(form)
            changes = {k: None if v is None else str(v) if isinstance(v, datetime) else v for k, v in options.items()}
        if action == "limit.set":
            limit = limit_of(form)
            changes = {"concurrency": limit.concurrency, "rate": limit.rate, "per": limit.per}
        count, done = await _run(client, action, form)
    except Exception as exc:
        events.emit(events.web_action, WebActionEvent(client.namespace, user, action, target, 0, changes, exc))
        raise
    events.emit(events.web_action, WebActionEvent(client.namespace, user, action, target, count, changes))
    return done


async def _run(client: AsyncClient, action: str, form: dict[str, str]) -> tuple[int, str]:
    """Do it: (how many things changed, what was done in words)."""
    job_id = form.get("id", "")
    if action == "job.retry":
        await client.retry_job(job_id)
        return 1, f"Job {job_id} is ready again."
    if action == "job.delete":
        await client.delete_job(job_id)
        return 1, f"Job {job_id} deleted."
    if action == "job.patch":
        await client.patch_job(job_id, **patch_options(form))
        return 1, f"Job {job_id} patched."
    if action == "job.cancel":
        if not await client.cancel_job(job_id):
            return 0, f"Job {job_id} had already finished: nothing changed."
        return 1, f"Job {job_id} cancelled."
    if action.startswith("jobs."):
        f = _bulk_filter(action, form)
        if action == "jobs.delete":
            n = await client.delete_jobs(f)
        elif action == "jobs.retry":
            n = await client.retry_jobs(f)
        elif action == "jobs.cancel":
            n = await client.cancel_jobs(f)
        else:
            n = await client.patch_jobs(f, **patch_options(form))
        return n, f"{action[5:].capitalize()}: {n} job(s)."
    if action.startswith("limit."):
        name = form.get("name", "").strip()
        if action == "limit.set":
            new = await client.set_limit(name, limit_of(form))
            return 1, f"Limit {name} {'created' if new else 'changed'}."
        existed = await client.delete_limit(name)
        return int(existed), f"Limit {name} {'deleted' if existed else 'was already gone'}."
    if action.startswith("queue."):
        name = form.get("name", "")
        pause = action == "queue.pause"
        changed = await (client.pause_queue(name) if pause else client.resume_queue(name))
        return int(changed), f"Queue {name} {'paused' if pause else 'resumed'}."
    group, entry = form.get("group", ""), form.get("entry", "") or None
    if action == "cron.run":
        if entry is None:
            raise ValidationError("cron.run needs an entry")
        state = await client.get_cron_entry(group, entry)
        await client.run(CronCore(client.core).enqueue(client.core.ids.generate(), state.job))
        return 1, f"Cron entry {group}/{entry} enqueued now."
    pause = action == "cron.pause"
    if entry is None:
        changed = await (client.pause_cron(group) if pause else client.resume_cron(group))
    else:
        changed = await (client.pause_cron_entry(group, entry) if pause else client.resume_cron_entry(group, entry))
    what = f"{group}/{entry}" if entry else group
    return int(changed), f"Cron {what} {'paused' if pause else 'resumed'}."
