"""Batches ended spans and POSTs them as OTLP/HTTP protobuf from one daemon thread.

A request only appends its span to a bounded buffer: when the buffer is full the span
is dropped and counted, so a slow or unreachable collector costs requests nothing.
Everything else (encoding, HTTP, retries with backoff) happens on the thread.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from neuros.otlp_encoding import TraceEncoder
from neuros.spans import LeanSpan

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
# Drops and export failures are logged at most this often, with counts.
WARN_INTERVAL_SECONDS = 60.0


class ExportConfigError(ValueError):
    pass


def _otlp_env(environ: Mapping[str, str], setting: str) -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_<setting>``, else ``OTEL_EXPORTER_OTLP_<setting>``."""
    return (
        environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{setting}", "").strip()
        or environ.get(f"OTEL_EXPORTER_OTLP_{setting}", "").strip()
    )


def _positive_int(name: str, raw: str, default: int) -> int:
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ExportConfigError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ExportConfigError(f"{name}={raw!r} must be positive")
    return value


def parse_headers(raw: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``k=v,...`` with percent-encoded values."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            logger.warning("OTEL_EXPORTER_OTLP_HEADERS: ignoring an entry without key=value")
            continue
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


@dataclass(frozen=True, slots=True)
class ExportConfig:
    url: str = DEFAULT_ENDPOINT + TRACES_PATH
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0  # seconds, for one batch including its retries
    schedule_delay: float = 1.0  # seconds between exports when batches do not fill
    max_queue_size: int = 2048
    max_batch_size: int = 512
    gzip: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ExportConfig:
        """The standard variables; times are milliseconds, as the spec says."""
        url = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if not url:
            base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
            url = base.rstrip("/") + TRACES_PATH
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ExportConfigError(f"OTLP traces endpoint {url!r} is not an http(s) URL")
        compression = _otlp_env(environ, "COMPRESSION").lower()
        if compression not in ("", "none", "gzip"):
            raise ExportConfigError(f"OTLP compression {compression!r} is not supported")

        def number(name: str, default: int) -> int:
            return _positive_int(name, environ.get(name, "").strip(), default)

        max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        max_batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        return cls(
            url=url,
            headers=parse_headers(_otlp_env(environ, "HEADERS")),
            timeout=_positive_int("OTLP timeout", _otlp_env(environ, "TIMEOUT"), 10_000) / 1000,
            schedule_delay=number("OTEL_BSP_SCHEDULE_DELAY", 1000) / 1000,
            max_queue_size=max_queue,
            max_batch_size=min(max_batch, max_queue),
            gzip=compression == "gzip",
        )


class _Transport:
    """One keep-alive HTTP connection to the collector, used by the export thread only."""

    def __init__(self, config: ExportConfig) -> None:
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {
            "Content-Type": "application/x-protobuf",
            **({"Content-Encoding": "gzip"} if config.gzip else {}),
            **config.headers,
        }
        self._connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes, timeout: float) -> tuple[int, float | None]:
        """The response status and its Retry-After seconds, if any. Raises OSError or
        HTTPException when the collector cannot be reached."""
        if self._connection is not None:
            try:
                return self._post_once(body, timeout)
            except ConnectionError:
                self.close()  # the collector closed an idle keep-alive connection: once more
            except (OSError, http.client.HTTPException):
                self.close()
                raise
        try:
            return self._post_once(body, timeout)
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def _post_once(self, body: bytes, timeout: float) -> tuple[int, float | None]:
        connection = self._connection
        if connection is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = self._connection = cls(self._host, self._port, timeout=timeout)
        else:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        connection.request("POST", self._path, body, self._headers)
        response = connection.getresponse()
        response.read()
        if response.will_close:
            self.close()
        return response.status, _retry_after(response.getheader("Retry-After"))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def abort(self) -> None:
        """From another thread: unblock a send or receive stuck on a silent collector."""
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class OtlpHttpExporter:
    """A bounded span buffer drained by a daemon thread into OTLP/HTTP requests."""

    def __init__(self, config: ExportConfig, resource: Mapping[str, str]) -> None:
        self.config = config
        self.dropped_spans = 0
        self.exported_spans = 0
        self.failed_spans = 0
        self._queue: deque[LeanSpan] = deque()
        self._max_queue = config.max_queue_size
        self._batch = config.max_batch_size
        self._encoder = TraceEncoder(resource)
        self._transport = _Transport(config)
        self._wake = threading.Event()
        self._interrupt = threading.Event()  # cuts a retry backoff short
        self._changed = threading.Condition()
        self._flush_requested = 0
        self._flush_done = 0
        self._stopping = False
        self._stop_deadline = float("inf")
        self._warned = {"dropped": 0.0, "failed": 0.0}
        self._reported = {"dropped": 0, "failed": 0}
        self._last_error = "none"
        self._thread = threading.Thread(target=self._run, name="otlp-span-export", daemon=True)
        self._thread.start()

    # --- request side: must stay cheap and never block ---

    def submit(self, span: LeanSpan) -> None:
        queue = self._queue
        waiting = len(queue)
        if waiting >= self._max_queue or self._stopping:
            self.dropped_spans += 1
            return
        queue.append(span)
        if waiting + 1 >= self._batch and not self._wake.is_set():
            self._wake.set()

    # --- control ---

    def force_flush(self, timeout: float = 30.0) -> bool:
        """Export what was submitted before the call; False if that took over ``timeout``."""
        with self._changed:
            self._flush_requested += 1
            target = self._flush_requested
            self._wake.set()
            self._changed.wait_for(
                lambda: self._flush_done >= target or not self._thread.is_alive(), timeout
            )
            return self._flush_done >= target

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Export what is buffered, giving up after ``timeout`` seconds; True if done."""
        if not self._thread.is_alive():
            return True
        self._stop_deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._interrupt.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._transport.abort()
            return False
        return True

    # --- export thread ---

    def _run(self) -> None:
        while True:
            self._wake.wait(self.config.schedule_delay)
            self._wake.clear()
            stopping = self._stopping
            with self._changed:
                target = self._flush_requested
            try:
                self._warn_if_needed()  # before exporting, which may take a while
                self._export_queued()
                self._warn_if_needed()
            except Exception:  # never let the thread die: spans would pile up unseen
                logger.exception("span export failed unexpectedly")
            with self._changed:
                self._flush_done = target
                self._changed.notify_all()
            if stopping:
                self._transport.close()
                return

    def _export_queued(self) -> None:
        queue = self._queue
        retry = True
        while queue:
            size = min(len(queue), self._batch)
            batch = [queue.popleft() for _ in range(size)]
            if self._stopping and time.monotonic() >= self._stop_deadline:
                self.failed_spans += len(batch) + len(queue)
                queue.clear()
                return
            body = self._encoder.encode(batch)
            if self.config.gzip:
                compressor = zlib.compressobj(wbits=31)  # gzip framing
                body = compressor.compress(body) + compressor.flush()
            if self._send(body, retry):
                self.exported_spans += size
            else:
                self.failed_spans += size
                retry = False  # one try each for the rest: a dead collector must not stall us

    def _send(self, body: bytes, retry: bool) -> bool:
        deadline = time.monotonic() + self.config.timeout
        attempt = 0
        while True:
            if self._stopping:
                deadline = min(deadline, self._stop_deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                status, retry_after = self._transport.post(body, remaining)
            except (OSError, http.client.HTTPException) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                if self._stopping or not retry:
                    return False  # the collector is gone; do not spend the shutdown on it
                status, retry_after = 0, None
            else:
                if 200 <= status < 300:
                    return True
                self._last_error = f"HTTP {status}"
                if status not in RETRYABLE_STATUSES or not retry:
                    return False
            backoff = min(FIRST_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
            pause = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1)  # noqa: S311
            attempt += 1
            if pause >= deadline - time.monotonic():
                return False
            if self._interrupt.wait(pause):
                self._interrupt.clear()  # shutdown began: retry now, within its deadline

    def _warn_if_needed(self) -> None:
        now = time.monotonic()
        for what, count in (("dropped", self.dropped_spans), ("failed", self.failed_spans)):
            new = count - self._reported[what]
            if new and now - self._warned[what] >= WARN_INTERVAL_SECONDS:
                self._warned[what], self._reported[what] = now, count
                if what == "dropped":
                    logger.warning("span buffer full: %d spans dropped (%d in all)", new, count)
                else:
                    logger.warning(
                        "span export to %s failed: %d spans lost (%d in all), last error %s",
                        self.config.url,
                        new,
                        count,
                        self._last_error,
                    )
