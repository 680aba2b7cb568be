// Opens the operator dashboard in headless Chromium, waits until every feed has its row, a chart and the
// reject samples are drawn, saves a screenshot and prints what an operator sees as one JSON line.
// Usage: node dashboard_page.mjs URL FEED_COUNT SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [url, feedCount, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
  const consoleErrors = [];
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => consoleErrors.push(String(err)));
  await page.goto(url);
  await page.waitForFunction(
    (n) => window.shfeeds && window.shfeeds.rows === n && window.shfeeds.charts >= 1 && window.shfeeds.samples >= 1,
    Number(feedCount),
    { timeout: 30000 },
  );
  await page.screenshot({ path: screenshot, fullPage: true });
  const seen = await page.evaluate(() => ({
    rows: [...document.querySelectorAll("#feeds tbody tr")].map((tr) => ({
      feed: tr.dataset.feed,
      state: tr.querySelector(".state").textContent,
      colour: getComputedStyle(tr.querySelector(".state")).backgroundColor,
      drawnPoints: tr.querySelector("polyline").getAttribute("points").split(" ").length,
    })),
    samples: [...document.querySelectorAll("#samples li")].map((li) => li.textContent),
    toTier: Object.fromEntries([...document.querySelectorAll("#feeds tbody tr")].map(
      (tr) => [tr.dataset.feed, tr.children[8].textContent])),
    websocket: Object.fromEntries([...document.querySelectorAll("#websocket tbody tr")].map(
      (tr) => [tr.dataset.tier, [...tr.children].slice(1).map((td) => Number(td.textContent))])),
    overall: document.getElementById("overall").textContent,
  }));
  await page.click('#feeds tbody tr[data-feed="bus"] a');
  await page.waitForFunction(() => !document.getElementById("details").hidden, null, { timeout: 10000 });
  seen.details = await page.evaluate(() => document.getElementById("details-title").textContent);
  console.log(JSON.stringify({ ...seen, consoleErrors }));
} finally {
  await browser.close();
}
