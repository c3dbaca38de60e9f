"""Run an aiohttp application on a background thread, bound to loopback by default (no access log unless given)."""
from __future__ import annotations

import logging

from aiohttp import web

from aaflow_core.concurrency import LoopThread
from aaflow_core.serve.app import ACCESS_LOG_FORMAT


class ServerThread:
    """`with ServerThread(app) as server: server.base_url` -> "http://127.0.0.1:PORT/v1"."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0,
                 access_log: logging.Logger | None = None, backlog: int = 1024) -> None:
        self.app = app
        self.backlog = backlog  # connections waiting to be accepted: a client opening 1000 at once must
        # not meet a full queue (128 by default), whose dropped SYNs are retried a second later
        self.access_log = access_log
        self.host = host
        self.port = port
        self._loop = LoopThread("aaflow-server")
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> "ServerThread":
        self._loop.__enter__()

        async def start() -> int:
            self._runner = web.AppRunner(self.app, access_log=self.access_log, access_log_format=ACCESS_LOG_FORMAT)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, backlog=self.backlog)
            await site.start()
            return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        try:
            self.port = self._loop.run(start())
        except BaseException:
            self._loop.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            self._loop.run(self._runner.cleanup())
        self._loop.__exit__(None, None, None)
