"""The operator page (/operator) in headless Chromium against a real node with the real Kafka and Redis: an
operator signs in with an operator key (other keys get the server's refusal), decides licensed requests,
sees another operator's decision as a 409, answers a feedback report, reads the day's usage and downloads
it as CSV; the applicant and the reporter see the outcome over HTTP, and every action the page took is on
audit.operator under the operator's key. The screenshot goes to tests/browser/screenshots/operator.png."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from access.identity import kafka_options
from ws_server.config import Naming, ServerConfig
from ws_server.testing import TierWriter, bus_record, create_tier_topics, running_node

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
SHOT = BROWSER_DIR / "screenshots" / "operator.png"
CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<img src=x onerror=\"document.title='pwned'\">"
# 2027-06-30 12:00 in Shanghai (UTC+8), as typed into the page's expiry field.
EXPIRY_MS = int(datetime(2027, 6, 30, 4, 0, tzinfo=UTC).timestamp() * 1000)


async def call(method: str, url: str, key: str | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers) as r:
        body = await r.read()
        data = orjson.loads(body) if r.content_type == "application/json" and body else body.decode()
        return r.status, dict(r.headers), data


async def apply(base: str, applicant: str) -> tuple[str, str]:
    query = f"tier=licensed&applicant={quote(applicant)}&purpose=journey%20planner&feeds=bus&term_days=90"
    status, _, made = await call("POST", f"{base}/v1/agreements?{query}&allow_ips=127.0.0.1")
    assert status == 201 and made["state"] == "pending", made
    return made["id"], made["claim_token"]


async def operator_log(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, **kafka_options(), auto_offset_reset="earliest",
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [orjson.loads(m.value) for msgs in batches.values() for m in msgs]
    finally:
        await consumer.stop()


async def test_operator_decides_answers_and_reads_usage_in_the_page(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    if not (shutil.which("node") and CHROMIUM.exists() and (BROWSER_DIR / "node_modules").exists()):
        pytest.fail("the operator page test needs node, Chromium and playwright-core: run `make browser-deps`")
    prefix = unique_name("oppage")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("licensed", "bus")])
    config = ServerConfig(port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming,
                          usage_flush_interval_s=0.2)  # fmt: skip
    async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
        base = f"http://127.0.0.1:{node.port}"
        await writer.put("licensed", "bus", [bus_record("v1", 121.4737, 31.2304, vehicle_id="X")])
        operator, operator_info = await node.keys.issue("operator")
        other_operator, _ = await node.keys.issue("operator")
        registered, _ = await node.keys.issue("registered")
        approve_id, approve_token = await apply(base, "Metro App Ltd ops@example.org")
        stale_id, _ = await apply(base, "Bus Research Lab lab@example.edu")
        reject_id, reject_token = await apply(base, f"{EVIL} Evil Corp")
        status, _, made = await call("POST", f"{base}/v1/feedback?feed=bus&entity_id=b-71-3&problem={quote(EVIL)}")
        assert status == 201
        report_id, report_token = made["id"], made["token"]

        # The page is static and public, with its type and security headers, whatever the key.
        status, headers, html = await call("GET", f"{base}/operator")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8" and "operator.js" in html
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
        status, headers, _ = await call("GET", f"{base}/static/operator.js")
        assert headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert headers["X-Content-Type-Options"] == "nosniff"

        plan = {"operator": operator, "registered": registered, "approve": approve_id, "stale": stale_id,
                "reject": reject_id, "report": report_id, "reply": "GPS unit replaced tomorrow 明天更换"}  # fmt: skip
        claimed: dict[str, Any] = {}
        SHOT.parent.mkdir(exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            "node", str(BROWSER_DIR / "operator_page.mjs"), base, str(SHOT), cwd=BROWSER_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(orjson.dumps(plan) + b"\n")
            await proc.stdin.drain()
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                if not line:
                    pytest.fail(f"the driver stopped: {(await proc.stderr.read()).decode()[-3000:]}")
                message = orjson.loads(line)
                if "need" not in message:
                    seen = message
                    proc.stdin.close()
                    break
                # Another operator approves the request the page still shows pending; the applicant whose
                # request the page approved claims the key and reads the bus feed with it.
                status, _, _ = await call("POST", f"{base}/v1/operator/agreements/{stale_id}/approve", other_operator)
                assert status == 200
                status, _, claimed = await call("GET", f"{base}/v1/agreements/{approve_id}?token={approve_token}")
                assert status == 200 and claimed["state"] == "approved", claimed
                status, _, page = await call("GET", f"{base}/v1/feeds/bus", claimed["key"])
                assert status == 200 and [r["id"] for r in page["records"]] == ["v1"], page
                await asyncio.sleep(0.6)  # the usage flush (0.2 s) and then some
                proc.stdin.write(b"ok\n")
                await proc.stdin.drain()
            assert await asyncio.wait_for(proc.wait(), 30) == 0, (await proc.stderr.read()).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

        # Keys that are not an operator's: the server's words, no panel, nothing kept.
        assert "401" in seen["unknownKey"] and "unknown or revoked API key" in seen["unknownKey"]
        assert seen["notOperator"].startswith("error:") and "403 forbidden" in seen["notOperator"]
        assert seen["panelsHiddenWhenRefused"] and seen["storedAfterRefusal"] == 0
        # The operator key: in this tab's session storage, never in the URL, not left in the field.
        assert seen["storedIsTheKey"] and seen["keyField"] == "" and not seen["keyFormShown"]
        assert operator not in seen["url"] and operator not in seen["finalUrl"] and seen["url"] == f"{base}/operator"

        # Pending requests, oldest first; the applicant's markup is text, never an element.
        assert [(r["id"], r["state"]) for r in seen["pending"]] == [
            (approve_id, "pending"), (stale_id, "pending"), (reject_id, "pending")
        ]  # fmt: skip
        assert seen["pending"][2]["applicant"] == f"{EVIL} Evil Corp" and seen["imagesInAgreements"] == 0
        assert "a rejection needs a reason" in seen["rejectWithoutReason"]
        assert seen["afterDecisions"][0]["id"] == stale_id  # the one still pending comes first
        decided = {r["id"]: r for r in seen["afterDecisions"]}
        assert decided[stale_id]["state"] == "pending"
        assert decided[approve_id]["state"] == "approved" and decided[reject_id]["state"] == "rejected"
        assert any("no contact address given" in h for h in decided[reject_id]["history"])
        # The applicant's key works and ends when the page set it to; the rejected applicant reads why.
        assert claimed["key"].startswith("shk_lic_") and claimed["expires_at"] == EXPIRY_MS
        _, _, refused = await call("GET", f"{base}/v1/agreements/{reject_id}?token={reject_token}")
        assert (refused["state"], refused["reason"], refused["key"]) == ("rejected", "no contact address given", None)
        # The request approved elsewhere meanwhile: the server's 409, and the page shows it approved.
        assert seen["conflict"].startswith("error:") and "409 conflict" in seen["conflict"]
        assert "only a pending request is approved" in seen["conflict"] and seen["staleNow"] == "approved"

        # The report reached the bus feed's owner, as text; the reporter reads the page's answer.
        assert [(r["id"], r["owner"], r["problem"]) for r in seen["openReports"]] == [(report_id, "jiushi", EVIL)]
        assert seen["imagesInReports"] == 0 and seen["title"] == seen["titleAtStart"] != "pwned"
        answered = {r["id"]: r for r in seen["answeredReports"]}[report_id]
        assert (answered["status"], answered["reply"]) == ("confirmed", plan["reply"])
        _, _, report = await call("GET", f"{base}/v1/feedback/{report_id}?token={report_token}")
        assert (report["status"], report["reply"]) == ("confirmed", plan["reply"])

        # The day's usage has the new key's row (day, key, agreement, feed, messages, ...), in the CSV too.
        rows = [r for r in seen["usage"] if r[2] == approve_id and r[3] == "bus"]
        assert len(rows) == 1 and rows[0][0] == seen["day"] and int(rows[0][4]) >= 1, seen["usage"]
        csv_lines = seen["csv"].splitlines()
        assert csv_lines[0] == "day,key_id,agreement_id,feed,messages,records,bytes,sessions,replays"
        assert any(f",{approve_id},bus," in line for line in csv_lines[1:]) and seen["csvName"].endswith(".csv")

        # Withdrawn in the page: the key is refused from then on.
        assert seen["withdrawn"] == "withdrawn"
        status, _, _ = await call("GET", f"{base}/v1/feeds/bus", claimed["key"])
        assert status == 401
        assert seen["consoleErrors"] == []

    # Each action the page took is on audit.operator, by the operator's key.
    entries = await operator_log(kafka_bootstrap, naming.operator_log_topic())
    actor = f"key:{operator_info.key_id}"
    by_page = [(e["action"], e["subject"]) for e in entries if e["actor"] == actor]
    assert by_page == [
        ("approve", approve_id), ("reject", reject_id), ("feedback_confirmed", report_id), ("withdraw", approve_id),
    ]  # fmt: skip
    assert SHOT.stat().st_size > 20_000
