"""Health aggregation and its HTTP endpoint (on loopback, a free port)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from calico.felix.health import HealthAggregator, serve_health
from calico.testing.clock import ManualClock


def test_liveness_times_out_and_readiness_waits_for_reporters() -> None:
    clock = ManualClock()
    health = HealthAggregator(clock)
    health.register("CalculationGraph", live_timeout=30, reports_ready=True)
    health.register("InternalDataplaneMainLoop", live_timeout=90, reports_ready=True)
    assert health.live() and not health.ready()
    health.report("CalculationGraph", ready=True)
    health.report("InternalDataplaneMainLoop", ready=True)
    assert health.ready()
    clock.now = 31
    assert not health.live() and not health.ready()
    health.report("CalculationGraph")
    assert health.live() and health.ready()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_endpoints() -> None:
    health = HealthAggregator()
    health.register("InternalDataplaneMainLoop", live_timeout=None, reports_ready=True)
    port = _free_port()
    server = serve_health(health, "127.0.0.1", port)
    try:
        assert _get(f"http://127.0.0.1:{port}/liveness")[0] == 200
        status, body = _get(f"http://127.0.0.1:{port}/readiness")
        assert status == 503 and body == {
            "InternalDataplaneMainLoop": {"live": True, "ready": False}
        }
        health.report("InternalDataplaneMainLoop", ready=True)
        assert _get(f"http://127.0.0.1:{port}/readiness")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
