// Drives the operator page in headless Chromium as an operator would and prints what the operator saw as
// one JSON line at the end. The first stdin line is the plan (keys and ids, from the test); when the test
// must act over HTTP meanwhile, this prints {"need": "..."} and waits for one more line.
// Usage: node operator_page.mjs BASE_URL SCREENSHOT_PATH
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { readFile } from "node:fs/promises";

const [base, screenshot] = process.argv.slice(2);
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const plan = JSON.parse((await lines.next()).value);
async function need(what) { console.log(JSON.stringify({ need: what })); await lines.next(); }

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = { consoleErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1000 }, acceptDownloads: true });
  const page = await context.newPage();
  // A refused request is logged by Chromium as "Failed to load resource"; the page shows those itself.
  page.on("console", (msg) => {
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) seen.consoleErrors.push(msg.text());
  });
  page.on("pageerror", (err) => seen.consoleErrors.push(String(err)));
  await page.goto(`${base}/operator`);
  const title = await page.title();
  // page.waitForFunction evaluates a string inside the page, which the page's CSP (no eval) refuses:
  // poll with evaluate instead.
  async function until(predicate, arg, timeout = 10000) {
    const end = Date.now() + timeout;
    while (!(await page.evaluate(predicate, arg))) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${predicate}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const state = () => page.evaluate(() => ({ ...window.shfeeds, loads: { ...window.shfeeds.loads } }));
  const alertText = () => page.$eval("#alert", (e) => (e.hidden ? "" : `${e.className}: ${e.textContent}`));
  const after = (field, n) => until(([f, k]) => window.shfeeds[f] > k, [field, n]);
  const rowSel = (table, id) => `#${table} tbody tr[data-id="${id}"]`;

  async function signIn(key) {
    const before = await state();
    await page.fill("#key", key);
    await page.click("#login button[type=submit]");
    await until((b) => window.shfeeds.failed > b.failed || window.shfeeds.signedIn, before);
  }

  // Keys that are not an operator's: the server's refusal, and nothing of the panels.
  await signIn("shk_not_a_key_at_all");
  seen.unknownKey = await alertText();
  await signIn(plan.registered);
  seen.notOperator = await alertText();
  seen.panelsHiddenWhenRefused = await page.$eval("#panels", (e) => e.hidden);
  seen.storedAfterRefusal = await page.evaluate(() => sessionStorage.length);

  await signIn(plan.operator);
  await until(() => window.shfeeds.loads.feedback > 0 && window.shfeeds.loads.usage > 0);
  seen.url = page.url();
  seen.keyFormShown = await page.isVisible("#login");
  seen.keyField = await page.inputValue("#key");
  seen.storedIsTheKey = await page.evaluate((k) => Object.keys(sessionStorage).some((n) => sessionStorage.getItem(n) === k),
    plan.operator);
  const agreementRows = () => page.$$eval("#agreements tbody tr", (rows) => rows.map((tr) => ({
    id: tr.dataset.id, state: tr.dataset.state, applicant: tr.querySelector(".applicant").textContent,
    history: [...tr.querySelectorAll(".history li")].map((li) => li.textContent),
  })));
  seen.pending = await agreementRows();
  seen.imagesInAgreements = await page.$$eval("#agreements img", (imgs) => imgs.length);

  // Approve with an expiry (Shanghai time) and a reason.
  let done = (await state()).done;
  await page.fill(`${rowSel("agreements", plan.approve)} input.expires`, "2027-06-30T12:00");
  await page.fill(`${rowSel("agreements", plan.approve)} input.reason`, "research use agreed");
  await page.click(`${rowSel("agreements", plan.approve)} button.approve`);
  await after("done", done);
  seen.approved = await alertText();

  // Reject: first without a reason (the page asks for one), then with it.
  await page.click(`${rowSel("agreements", plan.reject)} button.reject`);
  seen.rejectWithoutReason = await alertText();
  done = (await state()).done;
  await page.fill(`${rowSel("agreements", plan.reject)} input.reason`, "no contact address given");
  await page.click(`${rowSel("agreements", plan.reject)} button.reject`);
  await after("done", done);
  seen.afterDecisions = await agreementRows();

  // Another operator approves a request this page still shows as pending: the page says 409.
  await need("approve-elsewhere-and-claim");
  let failed = (await state()).failed;
  await page.click(`${rowSel("agreements", plan.stale)} button.approve`);
  await after("failed", failed);
  seen.conflict = await alertText();
  seen.staleNow = await page.$eval(rowSel("agreements", plan.stale), (tr) => tr.dataset.state);

  // Feedback addressed to the bus feed's owner: shown as text, confirmed with a reply.
  let loads = (await state()).loads.feedback;
  await page.fill("#filter-owner", "jiushi");
  await page.selectOption("#filter-status", "open");
  await page.click("#feedback-filter button[type=submit]");
  await until((n) => window.shfeeds.loads.feedback > n, loads);
  const reportRows = () => page.$$eval("#reports tbody tr", (rows) => rows.map((tr) => ({
    id: tr.dataset.id, status: tr.dataset.status, owner: tr.querySelector(".owner").textContent,
    problem: tr.querySelector(".problem").textContent, reply: tr.querySelector(".reply-shown")?.textContent ?? null,
  })));
  seen.openReports = await reportRows();
  seen.imagesInReports = await page.$$eval("#reports img", (imgs) => imgs.length);
  loads = (await state()).loads.feedback;
  await page.selectOption("#filter-status", ""); // all, so the answered report stays in view
  await page.click("#feedback-filter button[type=submit]");
  await until((n) => window.shfeeds.loads.feedback > n, loads);
  done = (await state()).done;
  await page.selectOption(`${rowSel("reports", plan.report)} select.next-status`, "confirmed");
  await page.fill(`${rowSel("reports", plan.report)} textarea.reply`, plan.reply);
  await page.click(`${rowSel("reports", plan.report)} button.answer`);
  await after("done", done);
  seen.answeredReports = await reportRows();

  // Usage of the day, after the new key was used, and its CSV.
  loads = (await state()).loads.usage;
  await page.click("#usage-filter button[type=submit]");
  await until((n) => window.shfeeds.loads.usage > n, loads);
  seen.usage = await page.$$eval("#usage tbody tr", (rows) => rows.map((tr) => [...tr.children].map((td) => td.textContent)));
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: 10000 }), page.click("#usage-csv")]);
  seen.csvName = download.suggestedFilename();
  seen.csv = await readFile(await download.path(), "utf8");
  seen.day = await page.inputValue("#usage-day");

  await page.screenshot({ path: screenshot, fullPage: true });

  // Withdraw the agreement just approved.
  done = (await state()).done;
  await page.fill(`${rowSel("agreements", plan.approve)} input.reason`, "study finished");
  await page.click(`${rowSel("agreements", plan.approve)} button.withdraw`);
  await after("done", done);
  seen.withdrawn = await page.$eval(rowSel("agreements", plan.approve), (tr) => tr.dataset.state);
  seen.title = await page.title();
  seen.titleAtStart = title;
  seen.finalUrl = page.url();
  console.log(JSON.stringify(seen));
} finally {
  input.close(); // the test's stdin stays open: do not wait for it
  await browser.close();
}
