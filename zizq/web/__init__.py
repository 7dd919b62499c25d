"""The web dashboard: :func:`create_app` returns an ASGI app (Starlette) of
one namespace, to run with ``zizq web`` or to mount in the user's own app.
Needs ``pip install 'zizq[web]'``."""

from zizq.web.app import create_app

__all__ = ("create_app",)
