"""Alerts raise once and clear once, and the webhook is retried; no broker needed (a local HTTP server)."""

from __future__ import annotations

from aiohttp import web

from control_plane.alerts import AlertBook, AlertEvent, WebhookSender


def test_an_alert_is_raised_once_and_cleared_once() -> None:
    book = AlertBook()
    assert [e.action for e in book.update([("bus", "ok", [])], 1)] == []
    raised = book.update([("bus", "stale", ["no data"])], 2)
    assert [(e.action, e.feed, e.state, e.reasons) for e in raised] == [("raise", "bus", "stale", ("no data",))]
    assert book.update([("bus", "stale", ["no data"])], 3) == []
    assert book.update([("bus", "degraded", ["rejects"])], 4) == []  # still the same episode
    assert [e.action for e in book.update([("bus", "ok", [])], 5)] == ["clear"]
    assert book.update([("bus", "ok", [])], 6) == []
    # After a restart, an open alert is known: not raised again, cleared when the feed recovers.
    again = AlertBook(["metro"])
    assert again.update([("metro", "down", ["x"])], 7) == []
    assert [e.action for e in again.update([("metro", "ok", [])], 8)] == ["clear"]


async def test_the_webhook_is_retried_until_it_answers(unused_tcp_port: int) -> None:
    calls: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.Response(status=503 if len(calls) < 3 else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        sender = WebhookSender(f"http://127.0.0.1:{unused_tcp_port}/hook", attempts=4, backoff_s=0.05)
        event = AlertEvent("raise", "bus", "stale", ("no data from sh-bus",), 1)
        assert await sender.send(event)
        assert len(calls) == 3 and calls[-1]["feed"] == "bus" and calls[-1]["action"] == "raise"
        gives_up = WebhookSender(f"http://127.0.0.1:{unused_tcp_port}/missing", attempts=2, backoff_s=0.05)
        assert not await gives_up.send(event) and gives_up.failed == 1
    finally:
        await runner.cleanup()
