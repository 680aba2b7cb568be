// The operator page: agreements to decide, feedback reports to answer, and a day's usage. It holds no data
// of its own; every list and every action is a call to /v1/operator/... with the operator's key, so each
// action is logged on audit.operator exactly as the CLI's are. Any refusal is shown in the alert bar.
import { ApiError, call, segment, session } from "/static/operator_api.js";
import { el, fill, fromShanghaiInput, shanghaiDay, shanghaiTime } from "/static/operator_dom.js";

const AGREEMENT_STATES = {
  pending: ["待审批", "pending"], approved: ["已批准", "approved"], rejected: ["已拒绝", "rejected"],
  withdrawn: ["已撤回", "withdrawn"], expired: ["已过期", "expired"],
};
const REPORT_STATUSES = {
  open: ["待处理", "open"], confirmed: ["已确认", "confirmed"], fixed: ["已修复", "fixed"], rejected: ["不成立", "rejected"],
};
// The steps a report may take (agreements/feedback.py); final statuses have none.
const NEXT = { open: ["confirmed", "fixed", "rejected"], confirmed: ["fixed", "rejected"] };
const ACTIONS = {
  apply: ["申请", "applied"], approve: ["批准", "approved"], reject: ["拒绝", "rejected"], withdraw: ["撤回", "withdrawn"],
};
const USAGE_COLUMNS = ["day", "key_id", "agreement_id", "feed", "messages", "records", "bytes", "sessions", "replays"];

const $ = (id) => document.getElementById(id);
const alertBar = $("alert");
const panels = $("panels");
// What the browser test waits on (never the key).
const page = { signedIn: false, loads: { agreements: 0, feedback: 0, usage: 0 }, done: 0, failed: 0 };
window.shfeeds = page;

function say(kind, text) {
  alertBar.className = kind;
  alertBar.textContent = text;
  alertBar.hidden = false;
}

function failed(err) {
  page.failed += 1;
  const text = err instanceof ApiError ? err.message : String(err);
  say("error", `出错 Error — ${text}`);
  if (err instanceof ApiError && err.status === 401) signOut(false); // the key is unknown or revoked now
}

const label = (table, value) => { const [zh, en] = table[value] || [value, value]; return `${zh} ${en}`; };

// Runs one action: the row's buttons are disabled meanwhile, then the list is reloaded (after a refusal
// too: a 409 means the item changed under the operator, who should see how) and the outcome said.
async function act(row, what, run, reload) {
  const buttons = [...row.querySelectorAll("button")];
  buttons.forEach((b) => { b.disabled = true; });
  alertBar.hidden = true;
  let refused = null;
  try {
    await run();
  } catch (err) {
    refused = err;
  }
  try {
    await reload();
  } catch (err) {
    refused = refused || err;
  }
  buttons.forEach((b) => { b.disabled = false; });
  if (refused) {
    failed(refused);
  } else {
    page.done += 1;
    say("ok", what);
  }
}

// ------------------------------------------------------------------------------------------ agreements

function history(agreement) {
  const entries = agreement.history.map((h) => el("li", {},
    `${shanghaiTime(h.at)} ${label(ACTIONS, h.action)} · ${h.by}`, h.reason ? ` · ${h.reason}` : ""));
  return el("details", { class: "history" },
    el("summary", {}, `记录 History (${entries.length})`), el("ol", {}, entries));
}

function decisionForm(agreement, row) {
  const reason = el("input", { class: "reason", size: 16, placeholder: "理由 reason", "aria-label": "reason" });
  const post = (action, params) => call("POST", `agreements/${segment(agreement.id)}/${action}`, params);
  const needsReason = (zh, en) => {
    if (reason.value.trim()) return false;
    say("error", `${zh} ${en}`);
    reason.focus();
    return true;
  };
  if (agreement.state === "pending") {
    const expires = el("input", { class: "expires", type: "datetime-local", "aria-label": "expires (Shanghai time)" });
    const approve = () => act(row, `${agreement.id} 已批准 approved`, async () => {
      const expiresAt = fromShanghaiInput(expires.value);
      if (Number.isNaN(expiresAt)) throw new Error("到期时间无效 the expiry is not a valid time");
      await post("approve", { reason: reason.value.trim(), expires_at: expiresAt });
    }, loadAgreements);
    const reject = () => {
      if (needsReason("拒绝须说明理由", "a rejection needs a reason for the applicant")) return;
      return act(row, `${agreement.id} 已拒绝 rejected`, () => post("reject", { reason: reason.value.trim() }),
        loadAgreements);
    };
    return el("div", { class: "decide" },
      el("label", {}, "到期 expires ", expires), reason,
      el("button", { type: "button", class: "approve", onclick: approve }, "批准 Approve"),
      el("button", { type: "button", class: "reject", onclick: reject }, "拒绝 Reject"));
  }
  if (agreement.state === "approved") {
    const withdraw = () => {
      if (needsReason("撤回须说明理由", "a withdrawal needs a reason")) return;
      return act(row, `${agreement.id} 已撤回 withdrawn`, () => post("withdraw", { reason: reason.value.trim() }),
        loadAgreements);
    };
    return el("div", { class: "decide" }, reason,
      el("button", { type: "button", class: "withdraw", onclick: withdraw }, "撤回 Withdraw"));
  }
  return null;
}

function agreementRow(a) {
  const row = el("tr", { data: { id: a.id, state: a.state } });
  const term = a.tier === "licensed" ? `${a.term_days} 天 days` : `${a.daily_quota ?? "—"} 条/天 msgs/day`;
  const state = el("td", { class: `state ${a.state}` }, label(AGREEMENT_STATES, a.state));
  if (a.reason && a.state !== "pending") state.append(el("div", { class: "reason-shown" }, a.reason));
  row.append(
    el("td", { class: "id" }, a.id, a.key_id ? el("div", { class: "muted" }, `密钥 key ${a.key_id}`) : null), state,
    el("td", { class: "applicant" }, a.applicant),
    el("td", {}, a.tier), el("td", {}, a.feeds.join(", ")),
    el("td", { class: "purpose" }, a.purpose || "—"), el("td", {}, term),
    el("td", {}, a.allow_ips.length ? a.allow_ips.join(", ") : "任意 any"),
    el("td", {}, shanghaiTime(a.expires_at)),
    el("td", {}, decisionForm(a, row), history(a)),
  );
  return row;
}

async function loadAgreements(key) {
  const list = await call("GET", "agreements", null, key);
  // Pending requests first (oldest first: they have waited longest), then the rest, newest first.
  list.sort((x, y) => (x.state === "pending") !== (y.state === "pending")
    ? (x.state === "pending" ? -1 : 1)
    : (x.state === "pending" ? x.created_at - y.created_at : y.created_at - x.created_at));
  fill(document.querySelector("#agreements tbody"), list.map(agreementRow), "没有协议 No agreements", 10);
  page.loads.agreements += 1;
}

// ------------------------------------------------------------------------------------------- feedback

function answerForm(report, row) {
  const next = NEXT[report.status];
  if (!next) return null;
  const status = el("select", { class: "next-status", "aria-label": "new status" },
    next.map((s) => el("option", { value: s }, label(REPORT_STATUSES, s))));
  const reply = el("textarea", { class: "reply", rows: 2, cols: 24, placeholder: "给报告人的答复 reply to the reporter",
    "aria-label": "reply" });
  const answer = () => act(row, `${report.id} → ${label(REPORT_STATUSES, status.value)}`,
    () => call("POST", `feedback/${segment(report.id)}`, { status: status.value, reply: reply.value.trim() }),
    loadFeedback);
  return el("div", { class: "decide" }, status, reply,
    el("button", { type: "button", class: "answer", onclick: answer }, "答复 Answer"));
}

function reportRow(r) {
  const row = el("tr", { data: { id: r.id, status: r.status } });
  const replied = r.reply ? el("div", { class: "reply-shown" }, r.reply) : null;
  const by = r.updated_by ? el("div", { class: "muted" }, `${r.updated_by} · ${shanghaiTime(r.updated_at)}`) : null;
  row.append(
    el("td", { class: "id" }, r.id),
    el("td", { class: `state ${r.status}` }, label(REPORT_STATUSES, r.status)),
    el("td", {}, r.feed), el("td", { class: "owner" }, r.owner), el("td", {}, r.entity_id || "—"),
    el("td", { class: "problem" }, r.problem), el("td", {}, r.reporter), el("td", {}, shanghaiTime(r.created_at)),
    el("td", {}, replied, by, answerForm(r, row)),
  );
  return row;
}

async function loadFeedback() {
  const params = { owner: $("filter-owner").value.trim(), feed: $("filter-feed").value.trim(),
    status: $("filter-status").value };
  const list = await call("GET", "feedback", params);
  list.sort((x, y) => y.created_at - x.created_at);
  fill(document.querySelector("#reports tbody"), list.map(reportRow), "没有反馈 No reports", 9);
  page.loads.feedback += 1;
}

// ---------------------------------------------------------------------------------------------- usage

const usageParams = () => ({ day: $("usage-day").value, key: $("usage-key").value.trim(),
  agreement: $("usage-agreement").value.trim() });

async function loadUsage() {
  const rows = await call("GET", "usage", usageParams());
  fill(document.querySelector("#usage tbody"), rows.map((r) => el("tr", { data: { key: r.key_id, feed: r.feed } },
    USAGE_COLUMNS.map((c) => el("td", { class: typeof r[c] === "number" ? "num" : null }, r[c] ?? "")))),
  "这一天没有用量 No usage that day", USAGE_COLUMNS.length);
  page.loads.usage += 1;
}

// The export endpoint needs the key in a header, so the CSV is fetched and handed over as a file.
async function downloadCsv() {
  const params = usageParams();
  const text = await call("GET", "usage", { ...params, format: "csv" });
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })),
    download: `usage-${params.day}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// ------------------------------------------------------------------------------------------- sign in

function signOut(clearAlert = true) {
  session.forget();
  page.signedIn = false;
  panels.hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  for (const body of document.querySelectorAll("tbody")) body.replaceChildren();
  if (clearAlert) alertBar.hidden = true;
}

async function signIn(key) {
  alertBar.hidden = true;
  try {
    await loadAgreements(key); // refused unless the key is an operator's
  } catch (err) {
    session.forget();
    failed(err);
    return;
  }
  session.keep(key);
  page.signedIn = true;
  panels.hidden = false;
  $("login").hidden = true;
  $("logout").hidden = false;
  $("who").textContent = "已登录 Signed in";
  await Promise.all([loadFeedback(), loadUsage()]).catch(failed);
}

$("usage-day").value = shanghaiDay();
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = $("key");
  const key = field.value.trim();
  field.value = "";
  if (!key) { say("error", "请填写运营密钥 Enter an operator key"); return; }
  signIn(key);
});
$("logout").addEventListener("click", () => signOut());
$("agreements-refresh").addEventListener("click", () => loadAgreements().catch(failed));
$("feedback-filter").addEventListener("submit", (event) => { event.preventDefault(); loadFeedback().catch(failed); });
$("usage-filter").addEventListener("submit", (event) => { event.preventDefault(); loadUsage().catch(failed); });
$("usage-csv").addEventListener("click", () => downloadCsv().catch(failed));
if (session.key()) signIn(session.key()); // still signed in in this tab
