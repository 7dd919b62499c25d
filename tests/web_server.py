"""The dashboard's tests serve it for real: uvicorn in a thread on a free
loopback port, and plain HTTP requests (urllib) with the cookie a browser
would keep."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn

from zizq.testing import free_port


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="none")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Browser:
    """A minimal HTTP user agent: keeps the CSRF cookie, does not follow
    redirects (so a test sees the 303)."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        body = None if data is None else urlencode(data).encode()
        req = urllib.request.Request(self.base + path, data=body)
        if self.cookies:
            req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as resp:
                status, text, headers = resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            status, text, headers = exc.code, exc.read().decode(), dict(exc.headers)
            exc.close()
        cookie = headers.get("set-cookie") or headers.get("Set-Cookie")
        if cookie:
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";")[0]
        return status, text, headers

    def get(self, path: str) -> tuple[int, str]:
        status, text, _ = self.request(path)
        return status, text

    def post(self, path: str, data: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        return self.request(path, data)

    def csrf(self, text: str) -> str:
        """The token in a page's forms."""
        found = re.search(r'name="csrf" value="([^"]+)"', text)
        assert found, "the page holds no form with a CSRF token"
        return found[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
