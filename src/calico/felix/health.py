"""Liveness and readiness, aggregated from Felix's components, served over HTTP.

Like Calico: each component registers a reporter; liveness fails when a component that
reports liveness has not reported within its timeout (a wedged loop), readiness until every
readiness reporter says ready (the dataplane only after its first in-sync apply).
GET /liveness and /readiness answer 200 or 503 with a JSON breakdown.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(slots=True)
class _Reporter:
    live_timeout: float | None  # None: does not report liveness
    reports_ready: bool
    last_live: float = 0.0
    ready: bool = False


class HealthAggregator:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._reporters: dict[str, _Reporter] = {}

    def register(self, name: str, live_timeout: float | None, reports_ready: bool) -> None:
        with self._lock:
            self._reporters[name] = _Reporter(live_timeout, reports_ready, self._clock())

    def report(self, name: str, live: bool = True, ready: bool | None = None) -> None:
        with self._lock:
            reporter = self._reporters[name]
            if live:
                reporter.last_live = self._clock()
            if ready is not None:
                reporter.ready = ready

    def summary(self) -> dict[str, dict[str, bool]]:
        now = self._clock()
        with self._lock:
            return {
                name: {
                    "live": r.live_timeout is None or now - r.last_live <= r.live_timeout,
                    "ready": not r.reports_ready or r.ready,
                }
                for name, r in self._reporters.items()
            }

    def live(self) -> bool:
        return all(s["live"] for s in self.summary().values())

    def ready(self) -> bool:
        return all(s["ready"] and s["live"] for s in self.summary().values())


def serve_health(health: HealthAggregator, host: str, port: int) -> ThreadingHTTPServer:
    """Start the /liveness and /readiness endpoint in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks = {"/liveness": health.live, "/readiness": health.ready}
            check = checks.get(self.path.split("?")[0])
            if check is None:
                self.send_error(404)
                return
            ok = check()
            body = json.dumps(health.summary()).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="felix-health", daemon=True).start()
    return server
