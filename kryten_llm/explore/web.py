"""The explore page: start, watch, stop and download explore runs from a browser.

Served under ``/explore/`` by ``kryten-llm explore --web`` (no bot needed) and by the bot's
dashboard (see :func:`mount`). The page (``static/explore.html`` and its script) talks to:

- ``GET  /explore/api/runs``: past and running runs; ``GET /explore/api/providers``;
- ``POST /explore/api/runs``: start or resume ``{"topic", "producers", "iterations" or
  "target", "providers": [...], "similarity"}``;
- ``GET  /explore/api/runs/{id}``: progress, yield per provider and producer, newest items;
- ``POST /explore/api/runs/{id}/stop``;
- ``GET  /explore/api/runs/{id}/files/{output.txt|output.json|metadata.json}``: a download.

The protections are the dashboard's (:func:`kryten_llm.webguard.protected_app`): bound to
loopback by default with the ``Host`` check, a CSP that allows only this server's scripts
(items are inserted as text, never as HTML), and the control token
(:func:`kryten_llm.webguard.check_token`, as ``Authorization: Bearer`` or ``?token=``)
for starting and stopping when bound elsewhere, and then for reading too. On the bot's
dashboard, starting and stopping always take its control token, like its other controls.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from kryten_llm.errors import ControlError
from kryten_llm.explore.runs import RunBoard, RunRefused
from kryten_llm.webguard import presented_token

if TYPE_CHECKING:
    import argparse

    from kryten_llm.config import Settings

log = structlog.get_logger(__name__)

PREFIX = "/explore"
_ASSETS = {
    "explore.html": "text/html",
    "explore.js": "text/javascript",
    "explore.css": "text/css",
}
Check = Callable[[str | None], None]  # raises ControlError when the token does not do


class ExplorePage:
    """The page's handlers over one :class:`RunBoard`.

    Args:
        board: the runs.
        act: checks the token of a start or stop; None lets anyone who reaches the page act.
        read: checks the token of every other request; None leaves reading open.
    """

    def __init__(self, board: RunBoard, *, act: Check | None, read: Check | None) -> None:
        self.board = board
        self._act = act
        self._read = read

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/", self._page),
            web.get(f"{PREFIX}/static/{{name}}", self._asset),
            web.get(f"{PREFIX}/api/providers", self._providers),
            web.get(f"{PREFIX}/api/runs", self._runs),
            web.post(f"{PREFIX}/api/runs", self._start),
            web.get(f"{PREFIX}/api/runs/{{id}}", self._detail),
            web.post(f"{PREFIX}/api/runs/{{id}}/stop", self._stop),
            web.get(f"{PREFIX}/api/runs/{{id}}/files/{{name}}", self._file),
        ]

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=_asset("explore.html"), content_type="text/html")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _ASSETS or name.endswith(".html"):
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=_ASSETS[name])

    async def _providers(self, request: web.Request) -> web.Response:
        return self._guarded(request, self._read, lambda: {"providers": self.board.providers()})

    async def _runs(self, request: web.Request) -> web.Response:
        return self._guarded(request, self._read, lambda: {"runs": self.board.runs()})

    async def _detail(self, request: web.Request) -> web.Response:
        run_id = request.match_info["id"]
        return self._guarded(request, self._read, lambda: self.board.detail(run_id))

    async def _stop(self, request: web.Request) -> web.Response:
        run_id = request.match_info["id"]
        return self._guarded(request, self._act, lambda: {"stopping": self.board.stop(run_id).id})

    async def _start(self, request: web.Request) -> web.Response:
        refused = self._refused(request, self._act)
        if refused is not None:
            return refused
        try:
            form = await request.json()
        except ValueError:
            form = None
        if not isinstance(form, dict):
            return _error(400, 'send JSON {"topic": ..., "providers": [...], ...}')
        try:
            run = await self.board.start(form)
        except RunRefused as exc:
            return _error(exc.status, str(exc))
        return web.json_response({"ok": True, "id": run.id, "resumed": run.resumed})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request, self._read)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        try:
            path = self.board.file(request.match_info["id"], name)
        except RunRefused as exc:
            return _error(exc.status, str(exc))
        body = await asyncio.to_thread(path.read_bytes)
        kind = "text/plain" if name.endswith(".txt") else "application/json"
        return web.Response(
            body=body,
            content_type=kind,
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def _guarded(
        self, request: web.Request, check: Check | None, answer: Callable[[], Any]
    ) -> web.Response:
        refused = self._refused(request, check)
        if refused is not None:
            return refused
        try:
            return web.json_response(answer())
        except RunRefused as exc:
            return _error(exc.status, str(exc))

    @staticmethod
    def _refused(request: web.Request, check: Check | None) -> web.Response | None:
        if check is None:
            return None
        try:
            check(presented_token(request))
        except ControlError as exc:
            return _error(exc.status, str(exc))
        return None


def mount(
    app: web.Application,
    *,
    settings: Callable[[], Settings],
    authorize: Check,
    exposed: bool,
    root: Path = Path("output"),
) -> RunBoard:
    """Add the explore page to the bot's dashboard ``app`` (before it starts).

    Args:
        app: the dashboard's application (its Host check and headers apply).
        settings: the bot's current settings (providers are read at each start).
        authorize: the dashboard's control-token check; starting and stopping always need it.
        exposed: whether the dashboard is bound beyond loopback (reading needs the token too).
        root: where run folders go.

    Returns:
        The board, whose :meth:`RunBoard.close` the caller awaits on shutdown.
    """
    board = RunBoard(root, settings)
    page = ExplorePage(board, act=authorize, read=authorize if exposed else None)
    app.router.add_routes(page.routes())
    return board


def _asset(name: str) -> bytes:
    return resources.files("kryten_llm.explore").joinpath("static", name).read_bytes()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    """``kryten-llm explore --web``: serve the page until SIGINT/SIGTERM, then stop the runs.

    Returns:
        0 after a clean stop; 2 when bound beyond loopback without a token.
    """
    from kryten_llm.console import EXIT_OK, EXIT_USAGE, on_stop_signals
    from kryten_llm.webguard import check_token, protected_app

    app, exposed = protected_app(args.host)
    token = settings.web.token.get_secret_value() if settings.web.token else None
    if exposed and token is None:
        print(
            f"kryten-llm explore: --host {args.host} is reachable from other machines: set "
            "web.token in --config or KRYTEN_LLM_WEB__TOKEN, or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return EXIT_USAGE
    guard = (lambda presented: check_token(token, presented)) if exposed else None
    board = RunBoard(args.output or Path("output"), lambda: settings)
    app.router.add_routes(ExplorePage(board, act=guard, read=guard).routes())
    app.router.add_get("/", _to_page)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    stopping = asyncio.Event()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = runner.addresses[0][1]
        print(f"kryten-llm explore: http://{args.host}:{port}{PREFIX}/", file=sys.stderr)
        print("Ctrl+C stops every run (files written) and the server.", file=sys.stderr)
        with on_stop_signals(lambda _sig: stopping.set()):
            await stopping.wait()
    finally:
        await board.close()
        await runner.cleanup()
    return EXIT_OK


async def _to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound(f"{PREFIX}/")
