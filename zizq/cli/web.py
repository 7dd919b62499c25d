"""``zizq web``: the dashboard (zizq.web) on its own, served by uvicorn.

Serve the web dashboard of one namespace (pip install 'zizq[web]'). It has
no login: anyone who reaches the port may see the jobs and act on them
(--read-only takes the actions away). So it listens on 127.0.0.1, this
machine only, unless --host says otherwise; to share the dashboard, mount
zizq.web.create_app in your app, behind its login, with an authorize
function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from zizq.errors import ValidationError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_web(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from zizq.client.aio import AsyncClient
        from zizq.web import create_app
    except ImportError as exc:
        raise ValidationError(f"zizq web needs the web extra: pip install 'zizq[web]' ({exc})") from None
    if not 0 <= args.port <= 65535:
        raise ValidationError(f"--port {args.port} is not in 0..65535")
    client = AsyncClient.from_url(args.url, args.namespace)
    app = create_app(client, authorize=(lambda request: "read") if args.read_only else None)
    if args.host not in LOOPBACK:
        may = "see every job" if args.read_only else "see every job and act on it"
        print(f"zizq web: listening on {args.host} without a login: anyone who reaches it may {may}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``zizq web`` to the ``zizq`` parser."""
    w = sub.add_parser(
        "web",
        help="serve the web dashboard (needs zizq[web])",
        description=(__doc__ or "").split("\n\n", 1)[1].strip(),
    )
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    w.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    w.add_argument("--read-only", action="store_true", help="show no action controls and refuse every action")
    common(w)
    w.set_defaults(func=cmd_web)
