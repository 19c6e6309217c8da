"""The protections every web server of kryten-llm shares: the bot's dashboard and the explore page.

One place for them, below both (``ops`` and ``explore`` import this, never each other for it):

- bound to a loopback address, only requests addressed to a loopback name are answered (a
  DNS-rebinding page cannot read anything);
- a POST must be JSON from a page of the same server or from a script (another site's page in
  the operator's browser cannot act, even where no token is asked);
- every answer carries a strict Content-Security-Policy (scripts only from the server, no
  inline code), ``nosniff``, no referrer and no caching;
- the control token is compared in constant time, and no configured token refuses everything.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from aiohttp import web

from kryten_llm.errors import ControlError

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def presented_token(request: web.Request, *, query: bool = True) -> str | None:
    """The token a request presents: ``Authorization: Bearer T`` or (when ``query``) ``?token=``.

    Actions take the header only (a URL ends up in logs and histories); reading may use either.
    """
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    return request.query.get("token") if query else None


def check_token(configured: str | None, presented: str | None) -> None:
    """Raise :class:`ControlError` unless ``presented`` is the ``configured`` token (compared
    in constant time); no configured token refuses everything."""
    if configured is None:
        raise ControlError(403, "controls are disabled: set web.token to enable them")
    if not presented or not hmac.compare_digest(presented.encode(), configured.encode()):
        raise ControlError(401, "a valid control token is required")


def _host_name(host: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:8780`` -> ``::1``, ``localhost:1`` ->
    ``localhost``, ``[::1]`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@web.middleware
async def _loopback_hosts_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """Bound to loopback, answer only requests addressed to loopback.

    A web page elsewhere could point its own host name at 127.0.0.1 (DNS rebinding) and read
    the dashboard's chat text; such a request carries that foreign name in ``Host``.
    """
    name = _host_name(request.host or "")
    if not is_loopback(name):
        return web.json_response({"ok": False, "error": "unexpected Host header"}, status=421)
    response: web.StreamResponse = await handler(request)
    return response


@web.middleware
async def _same_site_posts(request: web.Request, handler: Any) -> web.StreamResponse:
    """A POST must be JSON sent by a page of this server (or by a script, which sends no
    ``Origin``): another site's page in the operator's browser cannot act through it, even
    where no token is asked (the explore page on loopback)."""
    if request.method == "POST":
        origin = request.headers.get("Origin")
        site = request.headers.get("Sec-Fetch-Site", "same-origin")
        foreign = origin is not None and _host_of_origin(origin) != (request.host or "")
        if request.content_type != "application/json" or foreign or site == "cross-site":
            return web.json_response(
                {"ok": False, "error": "send JSON from this page or a script"}, status=403
            )
    response: web.StreamResponse = await handler(request)
    return response


def _host_of_origin(origin: str) -> str:
    """``http://127.0.0.1:8780`` -> ``127.0.0.1:8780``."""
    return origin.split("://", 1)[-1].rstrip("/")


def _middlewares(exposed: bool) -> list[Any]:
    return [_same_site_posts] if exposed else [_loopback_hosts_only, _same_site_posts]


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def protected_app(host: str) -> tuple[web.Application, bool]:
    """An empty aiohttp app with the dashboard's protections for a server bound to ``host``
    (the loopback ``Host`` check when ``host`` is a loopback address; CSP, nosniff, no referrer,
    no store on every answer), and whether ``host`` exposes it beyond this machine."""
    exposed = not is_loopback(host)
    app = web.Application(middlewares=_middlewares(exposed))
    app.on_response_prepare.append(_security_headers)
    return app, exposed
