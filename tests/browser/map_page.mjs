// Drives the live map page in headless Chromium as a user would and reports what the user sees, one JSON
// line per step on stdout. When it needs the test to act on the city (publish records), it prints
// {"need": "..."} and waits for one line on stdin.
// Usage: node map_page.mjs BASE_URL SCREENSHOT_DIR
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";

const [base, shotDir] = process.argv.slice(2);
mkdirSync(shotDir, { recursive: true });
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const report = (obj) => console.log(JSON.stringify(obj));
const t0 = Date.now();
const timed = async (what, promise) => { const t = Date.now(); const v = await promise; if (process.env.MAP_TIMING) console.error(`${what}: ${Date.now() - t} ms (at ${Date.now() - t0} ms)`); return v; };
async function need(what) { report({ need: what }); await lines.next(); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // WebGL on the CPU: headless Chromium has no GPU here.
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-renderer-backgrounding", "--disable-background-timer-throttling"],
});
const consoleErrors = [];
function watch(page) {
  page.on("console", (msg) => { if (msg.type() === "error") consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => consoleErrors.push(String(err)));
}

// Waits until the main subscription has answered every viewport update and its symbols are drawn.
async function settled(page, minEntities = 1) {
  await page.waitForFunction((min) => {
    const s = window.shfeeds;
    const m = s && s.main;
    return s.ready && m && m.open && m.entities.size >= min && m.updatesAnswered === m.updatesSent
      && m.diffs >= m.updatesAnswered && s.map.loaded() && !s.map.isMoving();
  }, minEntities, { timeout: 60000, polling: 100 });
  await page.waitForFunction(() => !window.shfeeds.flushPending(), null, { timeout: 10000, polling: 100 });
  await idle(page);
}

// The map has drawn everything it has (a repaint is asked for, as an idle map sends no "idle" again).
// With the city live the sources change every few hundred ms and the map may never be idle: then a
// rendered frame after 5 s is taken as settled.
// Resolves with nothing and evaluates to nothing: Playwright serialises what a page function returns, and a
// MapLibre event or Map object holds the whole map with its data (seconds of copying per call).
function idle(page) {
  return page.evaluate(() => new Promise((resolve) => {
    const map = window.shfeeds.map;
    const done = () => resolve(undefined);
    map.once("idle", done);
    setTimeout(() => map.once("render", done), 5000);
    map.triggerRepaint();
  }));
}

async function view(page, center, zoom) {
  await page.evaluate(([c, z]) => { window.shfeeds.map.jumpTo({ center: c, zoom: z }); }, [center, zoom]);
  // moveend → 150 ms debounce → update
  await page.waitForFunction(() => { const m = window.shfeeds.main; return m.updatesSent > 0 || m.open; }, null, { timeout: 5000 });
  await page.waitForTimeout(400);
}

// What is on screen: the subscription's ids, the drawn symbols' ids, the visible bounds and the legend.
function snapshot(page) {
  return page.evaluate(() => {
    const s = window.shfeeds, map = s.map, b = map.getBounds();
    const drawn = new Set(map.queryRenderedFeatures({ layers: ["entities"] }).map((f) => f.properties.id));
    const clusters = map.queryRenderedFeatures({ layers: ["clusters"] });
    // Symbols a user can see: inside the map and not under the legend or the side panel.
    const canvas = map.getCanvas().getBoundingClientRect();
    const covers = ["legend", "tour"].map((id) => document.getElementById(id))
      .filter((el) => el && !el.hidden).map((el) => el.getBoundingClientRect());
    const clear = [...new Set(map.queryRenderedFeatures({ layers: ["entities"] }).filter((f) => {
      const p = map.project(f.geometry.coordinates), x = canvas.left + p.x, y = canvas.top + p.y;
      return x > canvas.left + 6 && x < canvas.right - 6 && y > canvas.top + 6 && y < canvas.bottom - 6
        && !covers.some((r) => x > r.left - 8 && x < r.right + 8 && y > r.top - 8 && y < r.bottom + 8);
    }).map((f) => f.properties.id))].sort();
    return {
      feed: s.feed, bbox: s.bbox, zoom: map.getZoom(),
      visible: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()],
      ids: [...s.main.entities.keys()].sort(),
      outside: [...s.main.entities.values()].filter((r) => !(r.lng >= s.bbox[0] && r.lng <= s.bbox[2] && r.lat >= s.bbox[1] && r.lat <= s.bbox[3])).length,
      drawn: [...drawn].sort(),
      clear,
      clustered: clusters.reduce((n, f) => n + f.properties.point_count, 0),
      updatesSent: s.main.updatesSent,
      legend: [...document.querySelectorAll("#legend li[data-class]")].map((li) => li.dataset.class),
      legendText: document.getElementById("legend").innerText,
      status: s.status,
    };
  });
}

// Pixels of each colour in a screenshot, outside the legend and the side panel (which show the colours
// themselves): the PNG is decoded by the page's own image decoder.
async function colours(page, png, wanted) {
  return page.evaluate(async ([b64, wanted]) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const k = img.width / window.innerWidth;
    const skip = ["legend", "tour"].map((id) => document.getElementById(id))
      .filter((el) => el && !el.hidden).map((el) => el.getBoundingClientRect())
      .concat([document.querySelector("header").getBoundingClientRect()]);
    const rgb = wanted.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
    const counts = wanted.map(() => 0);
    for (let y = 0; y < c.height; y++) {
      for (let x = 0; x < c.width; x++) {
        if (skip.some((r) => x >= r.left * k && x < r.right * k && y >= r.top * k && y < r.bottom * k)) continue;
        const i = (y * c.width + x) * 4;
        for (let j = 0; j < rgb.length; j++) {
          if (Math.abs(px[i] - rgb[j][0]) + Math.abs(px[i + 1] - rgb[j][1]) + Math.abs(px[i + 2] - rgb[j][2]) <= 24) counts[j]++;
        }
      }
    }
    return Object.fromEntries(wanted.map((h, j) => [h, counts[j]]));
  }, [png.toString("base64"), wanted]);
}

async function legendColours(page) {
  return page.evaluate(() => Object.fromEntries([...document.querySelectorAll("#legend li[data-class]")].map((li) => {
    const rgb = getComputedStyle(li.querySelector(".swatch")).backgroundColor.match(/\d+/g).map(Number);
    return [li.dataset.class, "#" + rgb.map((v) => v.toString(16).padStart(2, "0")).join("")];
  })));
}

async function shoot(page, name) {
  const png = await page.screenshot({ path: `${shotDir}/${name}.png` });
  const legend = await legendColours(page);
  return { legend, pixels: await colours(page, png, Object.values(legend)) };
}

// Clicks the drawn symbol nearest the centre and returns the popup's text.
async function clickSymbol(page) {
  const point = await page.evaluate(() => {
    const map = window.shfeeds.map, c = map.getCanvas().getBoundingClientRect();
    const fs = map.queryRenderedFeatures({ layers: ["entities"] });
    const mid = [c.width / 2, c.height / 2];
    let best = null;
    for (const f of fs) {
      const p = map.project(f.geometry.coordinates);
      const d = Math.hypot(p.x - mid[0], p.y - mid[1]);
      if (!best || d < best.d) best = { d, x: c.left + p.x, y: c.top + p.y, id: f.properties.id };
    }
    return best;
  });
  if (!point) return null;
  await page.mouse.click(point.x, point.y);
  await page.waitForSelector(".maplibregl-popup-content", { timeout: 5000 });
  const text = await page.$eval(".maplibregl-popup-content", (el) => el.innerText);
  await page.evaluate(() => { window.shfeeds.popup.remove(); });
  return { id: point.id, text };
}

// Frames per second while a user drags the map about for `ms`, timed by requestAnimationFrame.
async function panFps(page, ms) {
  const box = await page.$eval("#map", (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; });
  await page.evaluate(() => {
    const t = (window.__frames = { n: 0, first: 0, last: 0, worst: 0, run: true });
    const tick = (now) => {
      if (t.first === 0) t.first = now; else t.worst = Math.max(t.worst, now - t.last);
      t.last = now; t.n++;
      if (t.run) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const cx = box[0] + box[2] / 2, cy = box[1] + box[3] / 2;
  const started = Date.now();
  let dir = 1;
  while (Date.now() - started < ms) {
    await page.mouse.move(cx, cy);
    await page.mouse.down();
    for (let i = 1; i <= 40; i++) await page.mouse.move(cx + dir * i * 6, cy + dir * i * 3);
    await page.mouse.up();
    dir = -dir;
  }
  return page.evaluate(() => {
    const t = window.__frames;
    t.run = false;
    const seconds = (t.last - t.first) / 1000;
    return { frames: t.n - 1, seconds, fps: (t.n - 1) / seconds, worstFrameMs: t.worst };
  });
}

const DOWNTOWN = [121.4737, 31.2304];
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 750 } });
  watch(page);
  await page.goto(`${base}/?feed=bus`);

  // 1. The whole city: buses clustered.
  await settled(page, 100);
  report({ step: "city", ...(await snapshot(page)) });

  // 2. Zoom into downtown: an update, and the symbols follow the viewport.
  await timed("view", view(page, DOWNTOWN, 14.5));
  await timed("settled", settled(page));
  const busSnap = await timed("snapshot", snapshot(page));
  const busShot = await timed("shoot", shoot(page, "bus"));
  report({ step: "bus", ...busSnap, shot: busShot, popup: await timed("click", clickSymbol(page)) });

  // 3. A district choice fits the view.
  await page.selectOption("#district", "310104");
  await page.waitForTimeout(900);
  await settled(page);
  report({ step: "district", ...(await snapshot(page)),
    districtBbox: await page.evaluate(() => window.shfeeds.layers.districts.features.find((f) => f.properties.adcode === "310104").properties.bbox) });
  await page.selectOption("#district", "");

  // 4. Each other feed, at a zoom where its symbols stand apart.
  for (const [feed, center, zoom] of [["metro", DOWNTOWN, 12.5], ["parking", DOWNTOWN, 15], ["charging", DOWNTOWN, 14],
    ["scenic", [121.46, 31.2], 11.5]]) {
    await view(page, center, zoom);
    await page.selectOption("#feed", feed);
    await settled(page);
    report({ step: feed, ...(await snapshot(page)), shot: await shoot(page, feed), popup: await clickSymbol(page) });
  }

  // A tourist's phone, open before the scenic counts move on (step 5), so it sees them move like the desktop.
  // Not earlier: both pages draw WebGL on the CPU through one GPU process, and each slows the other.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  watch(phone);
  await phone.goto(`${base}/?feed=tourism&area=SCN-YUYUAN`);
  await phone.waitForFunction(() => window.shfeeds && window.shfeeds.tour && window.shfeeds.tour.scenic
    && window.shfeeds.tour.scenic.entities.size >= 53, null, { timeout: 60000 });
  await page.bringToFront();

  // 5. Scenic counts move on by 15 minutes: the page now knows each area's trend.
  await need("scenic-now");
  await page.waitForFunction(() => {
    const s = window.shfeeds;
    return [...s.main.entities.keys()].filter((id) => s.trends.trend(id)).length >= s.main.entities.size && s.main.entities.size > 0;
  }, null, { timeout: 120000 });
  await page.waitForTimeout(900);
  report({ step: "scenic-trend", shot: await shoot(page, "scenic-trend"),
    arrows: await page.evaluate(() => window.shfeeds.map.queryRenderedFeatures({ layers: ["entity-arrows"] }).length),
    popup: await clickSymbol(page) });

  // 6. The tourism view on a phone: areas by comfort and trend, parking and chargers near a chosen area.
  await phone.bringToFront();
  await phone.waitForFunction(() => {
    const t = window.shfeeds.tour;
    return t && t.parking && t.charging && t.parking.entities.size > 0 && t.charging.entities.size > 0
      && document.querySelectorAll("#tour-areas li").length >= 53 && document.querySelectorAll("#tour-parking li[data-id]").length > 0;
  }, null, { timeout: 60000 });
  await phone.waitForFunction(() => window.shfeeds.tour.scenic.entities.size > 0
    && [...window.shfeeds.tour.scenic.entities.keys()].every((id) => window.shfeeds.trends.trend(id)), null, { timeout: 60000 });
  await idle(phone);
  await phone.waitForTimeout(1200);
  const tourPng = await phone.screenshot({ path: `${shotDir}/tourism.png` });
  const tour = await phone.evaluate(() => ({
    areas: [...document.querySelectorAll("#tour-areas li")].map((li) => ({ code: li.dataset.code, text: li.innerText })),
    nearTitle: document.getElementById("tour-near-title").innerText,
    parking: [...document.querySelectorAll("#tour-parking li")].map((li) => li.innerText),
    charging: [...document.querySelectorAll("#tour-charging li")].map((li) => li.innerText),
    parkingDrawn: window.shfeeds.map.queryRenderedFeatures({ layers: ["tour-parking"] }).length,
    chargingDrawn: window.shfeeds.map.queryRenderedFeatures({ layers: ["tour-charging"] }).length,
    nearFilters: [window.shfeeds.tour.parking.filter, window.shfeeds.tour.charging.filter],
    fontSize: parseFloat(getComputedStyle(document.querySelector("#tour-areas li .zh")).fontSize),
    panelWidth: document.getElementById("tour").getBoundingClientRect().width,
  }));
  const comfortColours = await legendColours(phone);
  tour.pixels = await colours(phone, tourPng, Object.values(comfortColours));
  tour.legend = comfortColours;
  // A tap on another area in the list chooses it.
  const second = tour.areas.find((a) => a.code !== "SCN-YUYUAN" && a.code === "SCN-ORIENTALPEARL") || tour.areas[1];
  await phone.tap(`#tour-areas li[data-code="${second.code}"]`);
  await phone.waitForFunction((code) => window.shfeeds.tour.selected === code
    && document.getElementById("tour-near-title").innerText.length > 0, second.code, { timeout: 10000 });
  tour.tapped = { code: second.code, title: await phone.$eval("#tour-near-title", (el) => el.innerText) };
  report({ step: "tourism", ...tour });
  await phone.close();
  await page.bringToFront();

  // 7. Frames per second while panning, with the whole city live.
  await page.selectOption("#feed", "bus");
  await view(page, DOWNTOWN, 10.5);
  await settled(page, 100);
  await need("live-on");
  const fps = {};
  for (const [name, zoom] of [["city", 10.5], ["streets", 13.5]]) {
    await view(page, DOWNTOWN, zoom);
    await settled(page);
    fps[name] = await panFps(page, 5000);
    await page.waitForTimeout(800);
    await settled(page);
    fps[name].after = await snapshot(page);
  }
  await need("live-off");
  report({ step: "fps", fps, frames: await page.evaluate(() => window.shfeeds.live.frames) });
  report({ step: "done", consoleErrors });
} finally {
  await browser.close();
  input.close(); // stdin stays open in the test: do not wait for it
}
