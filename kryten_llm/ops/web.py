"""The operator's web surface, served by aiohttp inside the service process.

- ``GET /health``: the health verdict as JSON (HTTP 503 when failing, for load balancers);
- ``GET /metrics``: Prometheus text format;
- ``GET /``: the live dashboard (``static/``, shipped in the package: no asset from the
  internet), fed by ``GET /api/stream`` (server-sent events, one state snapshot per
  ``push_interval_seconds``) and ``GET /api/state``;
- ``POST /api/control``: ``{"action": ..., "value": ...}`` with the control token in an
  ``Authorization: Bearer`` header (never a cookie, so another site cannot forge the request).

It binds to 127.0.0.1 by default, and then answers only requests whose ``Host`` is a loopback
name (a DNS-rebinding page cannot read it). Bound to any other address, the chat text (who said
what, and the replies) is left out of ``/api/state`` and ``/api/stream`` for requests that do
not present the control token (``Authorization: Bearer`` or ``?token=``), and a warning says so
at startup; ``/health`` and ``/metrics`` carry no chat text and stay open for scrapers.
Every page is sent with a strict Content-Security-Policy: scripts only from this server, no
inline code, so chat text can never run as a script even if it were inserted as HTML (the page
inserts it as text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from kryten_llm.errors import ControlError
from kryten_llm.ops.controls import Controls
from kryten_llm.webguard import presented_token, protected_app

if TYPE_CHECKING:
    from kryten_llm.config import WebConfig

log = structlog.get_logger(__name__)

_STATIC = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


def _asset(name: str) -> bytes:
    return resources.files("kryten_llm.ops").joinpath("static", name).read_bytes()


class WebServer:
    """Serves health, metrics, the dashboard and the controls.

    Args:
        config: the ``web`` section (host, port, push interval).
        state: the dashboard snapshot.
        health: the health verdict.
        metrics: the Prometheus text.
        controls: the operator's switches.
    """

    def __init__(
        self,
        config: WebConfig,
        *,
        state: Callable[[], dict[str, Any]],
        health: Callable[[], dict[str, Any]],
        metrics: Callable[[], str],
        controls: Controls,
    ) -> None:
        self._config = config
        self._state = state
        self._health = health
        self._metrics = metrics
        self._controls = controls
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.streams = 0
        self._cached: dict[bool, tuple[float, bytes]] = {}
        app, self.exposed = protected_app(config.host)
        app.router.add_get("/", self._dashboard)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/api/state", self._get_state)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_post("/api/control", self._control)
        self.app = app

    async def start(self) -> None:
        """Listen on the configured address; ``port`` is the real one (config 0: any free)."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._config.host, self._config.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        log.info("web_listening", url=f"http://{self._config.host}:{self.port}/")
        if self.exposed:
            log.warning(
                "web_exposed",
                host=self._config.host,
                detail="chat text is shown only to requests with the control token",
                fix="bind web.host to 127.0.0.1 behind a reverse proxy, or set web.token"
                if not self._controls.enabled
                else "keep web.token secret; /health and /metrics stay open",
            )

    async def stop(self) -> None:
        """End open streams, then stop listening."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers --------------------------------------------------------------------------

    async def _dashboard(self, request: web.Request) -> web.Response:
        return web.Response(body=_asset("dashboard.html"), content_type="text/html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=_STATIC[name])

    async def _get_health(self, request: web.Request) -> web.Response:
        verdict = self._health()
        return web.json_response(verdict, status=503 if verdict["status"] == "failing" else 200)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def _get_state(self, request: web.Request) -> web.Response:
        state = self._state()
        return web.json_response(state if self._may_read_chat(request) else _without_chat(state))

    def _may_read_chat(self, request: web.Request) -> bool:
        """Loopback binds show chat to anyone local; other binds only to the token's holder."""
        if not self.exposed:
            return True
        try:
            self._controls.authorize(presented_token(request))
        except ControlError:
            return False
        return True

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        self.streams += 1
        chat = self._may_read_chat(request)
        try:
            while not self._closing.is_set():
                await response.write(self._event(chat=chat))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._config.push_interval_seconds)
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self.streams -= 1
        return response

    def _event(self, *, chat: bool) -> bytes:
        """The current snapshot as one SSE event, built once per push for every open stream."""
        now = time.monotonic()
        cached = self._cached.get(chat)
        if cached is None or now - cached[0] >= self._config.push_interval_seconds / 2:
            state = self._state()
            payload = json.dumps(state if chat else _without_chat(state), separators=(",", ":"))
            cached = self._cached[chat] = (now, f"data: {payload}\n\n".encode())
        return cached[1]

    async def _control(self, request: web.Request) -> web.Response:
        token = presented_token(request, query=False)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return web.json_response(
                {"ok": False, "error": 'send JSON {"action": ..., "value": ...}'}, status=400
            )
        origin = f"web {request.remote or '?'} {request.headers.get('User-Agent', '')[:80]}"
        try:
            result = await self._controls.run(
                body["action"], body.get("value"), token=token, origin=origin
            )
        except ControlError as exc:
            errors = [{"path": p, "problem": w, "fix": f} for p, w, f in exc.errors]
            return web.json_response(
                {"ok": False, "error": str(exc), **({"errors": errors} if errors else {})},
                status=exc.status,
            )
        return web.json_response({"ok": True, **result})


_CHAT_FIELDS = ("username", "text", "reply")


def _without_chat(state: dict[str, Any]) -> dict[str, Any]:
    """The snapshot minus who said what and what the bot answered."""
    recent = [
        {key: value for key, value in entry.items() if key not in _CHAT_FIELDS}
        for entry in state.get("recent", ())
    ]
    return {**state, "recent": recent, "chat_hidden": True}
