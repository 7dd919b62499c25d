"""The dashboard as an ASGI app (Starlette): :func:`create_app`.

Pages are rendered on the server (Jinja2); htmx, shipped in ``static/``,
refreshes the overview. Every page costs Redis a bounded number of calls
(:mod:`zizq.web.reads`); actions go through the client's methods
(:mod:`zizq.web.actions`).

Access: ``authorize(request)`` says "admin" (may act), "read" (may look)
or None (refused, 403). Actions are POSTs that carry the CSRF token the
pages hold (a cookie and the same value in the form), so another site
cannot make a signed-in browser act.
"""

from __future__ import annotations

import contextlib
import hmac
import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from zizq.cli.format import error_text, json_text, relative, span, stamp
from zizq.client.aio import AsyncClient
from zizq.errors import BatchNotFound, JobNotFound, ValidationError, ZizqError
from zizq.web import actions, reads
from zizq.web.chart import throughput_svg

Role = Literal["admin", "read"]
Authorize = Callable[[Request], "Role | Awaitable[Role | None] | None"]
HERE = Path(__file__).parent
CSRF_COOKIE = "zizq_csrf"


def _everyone_admin(request: Request) -> Role:
    return "admin"


def _remote_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Dashboard:
    """The app's state: the client, the templates, and who may do what."""

    def __init__(
        self,
        client: AsyncClient,
        authorize: Authorize | None,
        user: Callable[[Request], str] | None,
        refresh: float,
    ) -> None:
        if not isinstance(client, AsyncClient):
            raise ValidationError(
                f"create_app needs a zizq.AsyncClient, not {client!r}: make one with zizq.AsyncClient.from_url(url)"
            )
        if not refresh > 0:
            raise ValidationError(f"refresh {refresh!r} must be a number of seconds above 0")
        self.client = client
        self.authorize = authorize or _everyone_admin
        self.user = user or _remote_address
        self.refresh = refresh
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
        )
        self.env.globals.update(
            span=span, relative=relative, stamp=stamp, json_text=json_text, error_text=error_text, chart=throughput_svg
        )

    async def role(self, request: Request) -> Role | None:
        role = self.authorize(request)
        if inspect.isawaitable(role):
            role = await role
        return role if role in ("admin", "read") else None

    def render(self, request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        root = request.scope.get("root_path", "")
        html = self.env.get_template(template).render(
            root=root,
            csrf=token,
            request=request,
            role=request.state.role,
            namespace=self.client.namespace,
            states=reads.STATE_PAGES,
            message=request.query_params.get("msg", ""),
            **context,
        )
        response = HTMLResponse(html, code)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, token, path=root or "/", httponly=True, samesite="strict")
        return response

    def refused(self, request: Request, why: str) -> HTMLResponse:
        request.state.role = None
        return self.render(request, "error.html", 403, title="Refused", error=why)


def page(fn: Callable[[Dashboard, Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that anyone ``authorize`` admits may see; a zizq error
    (a bad filter, a job that is gone) becomes an error page."""

    async def endpoint(request: Request) -> Response:
        d: Dashboard = request.app.state.dashboard
        role = await d.role(request)
        if role is None:
            return d.refused(request, "You may not see this dashboard.")
        request.state.role = role
        try:
            return await fn(d, request)
        except (JobNotFound, BatchNotFound) as exc:
            return d.render(request, "error.html", 404, title="Not found", error=str(exc))
        except ZizqError as exc:
            return d.render(request, "error.html", 400, title="Cannot do that", error=str(exc))

    return endpoint


def filter_params(request: Request) -> dict[str, str]:
    """The job filter of a query string: its non-empty fields."""
    fields = [k for k in actions.FILTER_FIELDS if k != "status"]
    return {k: v.strip() for k in fields if (v := request.query_params.get(k, "").strip())}


@page
async def overview_page(d: Dashboard, request: Request) -> Response:
    search = request.query_params.get("q", "")
    data = await reads.overview(d.client, search)
    template = "_overview.html" if request.headers.get("hx-request") else "overview.html"
    return d.render(request, template, title="Overview", o=data, search=search, refresh=d.refresh)


@page
async def jobs_page(d: Dashboard, request: Request) -> Response:
    status = request.query_params.get("status", "ready")
    params = filter_params(request)
    f = actions.make_filter(params)
    order = request.query_params.get("order", "asc")
    data = await reads.job_list(d.client, status, f, request.query_params.get("cursor", ""), order)
    if order != "asc":
        params["order"] = order  # kept by the links
    return d.render(
        request, "jobs.html", title="Jobs", status=status, params=params, data=data, query=urlencode, page=reads.PAGE
    )


@page
async def job_page(d: Dashboard, request: Request) -> Response:
    job = await d.client.get_job(request.path_params["id"])
    errors = await d.client.job_errors(job.id)
    now = (await d.client.stats()).now
    # At most 100 dependencies (MAX_DEPENDENCIES), read in one call.
    deps = await d.client.get_dependencies(job)
    return d.render(
        request,
        "job.html",
        title=f"Job {job.id}",
        job=job,
        errors=errors,
        now=now,
        deps=list(zip(job.depends_on, deps, strict=True)),
    )


@page
async def batches_page(d: Dashboard, request: Request) -> Response:
    offset = actions.whole("offset", request.query_params.get("offset", "0"))
    data = await reads.batch_page(d.client, offset)
    now = (await d.client.stats()).now
    return d.render(request, "batches.html", title="Batches", p=data, now=now)


@page
async def batch_page(d: Dashboard, request: Request) -> Response:
    info = await d.client.get_batch(request.path_params["id"])
    now = (await d.client.stats()).now
    return d.render(request, "batch.html", title=f"Batch {info.id}", b=info, now=now)


@page
async def state_page(d: Dashboard, request: Request) -> Response:
    state = request.path_params["state"]
    offset = actions.whole("offset", request.query_params.get("offset", "0"))
    queue = request.query_params.get("queue", "") or None
    data = await reads.state_page(d.client, state, offset, queue)
    return d.render(request, "state.html", title=reads.STATE_PAGES[state], p=data, queue=queue or "")


@page
async def cron_page(d: Dashboard, request: Request) -> Response:
    groups = await d.client.list_crons()
    now = (await d.client.stats()).now
    return d.render(request, "cron.html", title="Cron", groups=groups, now=now)


@page
async def workers_page(d: Dashboard, request: Request) -> Response:
    rows, now = await reads.workers(d.client)
    return d.render(request, "workers.html", title="Workers", rows=rows, now=now)


@page
async def limits_page(d: Dashboard, request: Request) -> Response:
    states = await d.client.limits()
    return d.render(request, "limits.html", title="Limits", limits=states, form=dict(request.query_params))


@page
async def confirm_page(d: Dashboard, request: Request) -> Response:
    """What an action will do, before it runs: for a bulk action, how many
    jobs match now."""
    if request.state.role != "admin":
        return d.refused(request, "Your access is read-only.")
    form = dict(request.query_params)
    plan = await actions.preview(d.client, form)
    return d.render(request, "confirm.html", title="Confirm", plan=plan, form=form)


async def act(request: Request) -> Response:
    """Run an action (POST), then go back where the form said."""
    d: Dashboard = request.app.state.dashboard
    role = await d.role(request)
    if role is None:
        return d.refused(request, "You may not see this dashboard.")
    request.state.role = role
    # The forms are urlencoded (no file upload), so no multipart parser is needed.
    form = dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, form.get("csrf", "")):
        return d.refused(request, "The form's security token is missing or stale: reload the page and try again.")
    if role != "admin":
        return d.refused(request, "Your access is read-only.")
    back = form.get("back", "/")
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/"  # only a page of the dashboard: never another site ("//host", "/\\host")
    try:
        done = await actions.run(d.client, form, d.user(request))
    except ZizqError as exc:
        return d.render(request, "error.html", 400, title="Cannot do that", error=str(exc))
    sep = "&" if "?" in back else "?"
    root = request.scope.get("root_path", "")
    return RedirectResponse(f"{root}{back}{sep}{urlencode({'msg': done})}", status_code=303)


def create_app(
    client: AsyncClient,
    *,
    authorize: Authorize | None = None,
    user: Callable[[Request], str] | None = None,
    refresh: float = 2.0,
) -> Starlette:
    """The dashboard of ``client``'s namespace, as an ASGI app to run or to
    mount under any path.

    :param client: a :class:`zizq.AsyncClient` (one per event loop is
        opened as needed, so WSGI adapters work too).
    :param authorize: ``authorize(request)`` (sync or async) returns
        ``"admin"`` (sees and acts), ``"read"`` (sees; no action controls,
        actions refused) or None (403). Default: everyone is admin, so only
        bind such an app to a trusted address.
    :param user: ``user(request)`` names who acts, in the ``web_action``
        events (default: the client's IP address).
    :param refresh: seconds between the overview's live updates.
    """
    dashboard = Dashboard(client, authorize, user, refresh)
    routes = [
        Route("/", overview_page),
        Route("/jobs", jobs_page),
        Route("/jobs/{id}", job_page),
        Route("/state/{state}", state_page),
        Route("/batches", batches_page),
        Route("/batches/{id}", batch_page),
        Route("/cron", cron_page),
        Route("/workers", workers_page),
        Route("/limits", limits_page),
        Route("/confirm", confirm_page),
        Route("/act", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The client keeps connections per event loop: close this loop's
        # when the server stops (a mounted app is closed by its host's).
        yield
        await client.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    return app
