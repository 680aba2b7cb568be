// Building the operator page's rows from server data: every value goes in as text (append of a string
// makes a text node), so an applicant's name or a report's text can never become markup.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "data") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const SHANGHAI_MS = 8 * 3600 * 1000; // UTC+8 all year (no daylight saving)

// "2026-12-05 17:05" in Shanghai time.
export function shanghaiTime(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms + SHANGHAI_MS).toISOString().slice(0, 16).replace("T", " ");
}

export const shanghaiDay = (ms = Date.now()) => new Date(ms + SHANGHAI_MS).toISOString().slice(0, 10);

// The value of a datetime-local field read as Shanghai time, in epoch ms; null when empty.
export function fromShanghaiInput(value) {
  if (!value) return null;
  const ms = Date.parse(`${value}Z`); // "2027-06-30T12:00" + "Z": that wall time in UTC, then shifted
  return Number.isNaN(ms) ? NaN : ms - SHANGHAI_MS;
}

export function fill(tbody, rows, emptyText, columns) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText))]));
}
