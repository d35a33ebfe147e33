"""One log line per request, naming the route template: raw paths carry user ids."""

import logging
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from neuros.middleware.routes import method_label, route_template
from neuros.middleware.status import StatusRecordingSend

logger = logging.getLogger("neuros.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recording = StatusRecordingSend(send)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, recording)
        finally:
            logger.info(
                "%s %s %d %.1fms token=%s",
                method_label(scope),
                route_template(scope),
                recording.status,
                (time.perf_counter() - start) * 1000,
                # The token's name (set by neuros.api.auth), never the token or user.
                scope.get("state", {}).get("token_name", "-"),
            )
