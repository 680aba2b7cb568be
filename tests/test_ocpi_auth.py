"""OCPI credentials: what our pollers present, what the push receiver and the simulator accept."""

from __future__ import annotations

import base64
import time

import orjson
from aiohttp.test_utils import TestClient, TestServer

from adapters.formats.ocpi_auth import authorization_header, token_accepted
from adapters.runtime.sources import SOURCES
from adapters.simulators.charging_sessions import PATH
from adapters.simulators.city import SimulatedCity
from adapters.simulators.server import build_app
from settings import Settings


def test_the_token_is_sent_base64_encoded_and_accepted_in_either_form() -> None:
    header = authorization_header("abc-123")
    assert header == "Token " + base64.b64encode(b"abc-123").decode()
    assert token_accepted(header, "abc-123")
    assert token_accepted("Token abc-123", "abc-123")  # the plain form of OCPI 2.1.1
    assert token_accepted("token  " + base64.b64encode(b"abc-123").decode() + " ", "abc-123")
    for wrong in (None, "", "Token", "Token other", "Bearer abc-123", authorization_header("abc-1234")):
        assert not token_accepted(wrong, "abc-123")
    assert not token_accepted(header, ""), "no expected token: nothing is accepted, not everything"


def test_only_ocpi_sources_present_the_configured_token() -> None:
    with_token = Settings(ocpi_token="t0ken")
    assert SOURCES["sh-charging-sessions"].request_headers(with_token) == {
        "Authorization": authorization_header("t0ken")
    }
    assert SOURCES["sh-charging-sessions"].request_headers(Settings(ocpi_token="")) == {}
    assert SOURCES["sh-bus"].request_headers(with_token) == {}  # never leaked to other hosts
    assert "t0ken" not in repr(with_token)


async def test_the_simulated_operator_refuses_cdr_requests_without_the_token() -> None:
    city = SimulatedCity(3, start_ms=int(time.time() * 1000), buses=5, lots=5, connectors=50)
    async with TestClient(TestServer(build_app(city, ocpi_token="sim-token"))) as client:
        refused = await client.get(PATH)
        assert refused.status == 401 and orjson.loads(await refused.read())["status_code"] == 2000
        wrong = await client.get(PATH, headers={"Authorization": authorization_header("nope")})
        assert wrong.status == 401
        ok = await client.get(PATH, headers={"Authorization": authorization_header("sim-token")})
        assert ok.status == 200 and orjson.loads(await ok.read())["status_code"] == 1000
        stats = await (await client.get("/_stats")).json()
        assert stats["charging_sessions"]["unauthorized"] == 2
        # The other feeds are not OCPI: no credentials asked.
        assert (await client.get("/bus/gps.json")).status == 200
