// Opens the map page in headless Chromium and reports what a user would see, as JSON lines on stdout.
// Usage: node map_page.mjs URL EXPECTED_IDS(comma) LATE_ID
// 1. waits until the district outlines are drawn and every expected entity is on the map → {"ready": ...}
// 2. then waits for LATE_ID (published by the test after "ready") to arrive live → {"late": ...}
import { chromium } from "playwright-core";

const [url, expected, lateId] = process.argv.slice(2);
const wanted = expected.split(",");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const consoleErrors = [];
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => consoleErrors.push(String(err)));
  await page.goto(url);
  await page.waitForFunction(
    (ids) => window.shfeeds && window.shfeeds.districts && ids.every((id) => window.shfeeds.entities.has(id)),
    wanted,
    { timeout: 20000 },
  );
  const ready = await page.evaluate(() => {
    const canvas = document.getElementById("map");
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let filled = 0, red = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] > 0) filled++;
      if (px[i] > 180 && px[i + 1] < 100 && px[i + 2] < 80) red++;
    }
    return {
      districts: window.shfeeds.districts.features.length,
      entities: [...window.shfeeds.entities.keys()].sort(),
      status: document.getElementById("status").textContent,
      filledPixels: filled,
      entityPixels: red,
    };
  });
  console.log(JSON.stringify({ ready }));
  await page.waitForFunction((id) => window.shfeeds.entities.has(id), lateId, { timeout: 20000 });
  const late = await page.evaluate((id) => window.shfeeds.entities.get(id), lateId);
  console.log(JSON.stringify({ late, consoleErrors }));
} finally {
  await browser.close();
}
