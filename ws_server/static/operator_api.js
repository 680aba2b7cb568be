// The operator page's calls to the /v1/operator endpoints (docs/agreements.md). The key lives in this
// tab's sessionStorage only and travels in the Authorization header: never in a URL, never logged.
const STORE = "shfeeds.operatorKey";

export const session = {
  key: () => sessionStorage.getItem(STORE),
  keep: (key) => sessionStorage.setItem(STORE, key),
  forget: () => sessionStorage.removeItem(STORE),
};

// A refusal from the server, with what the operator needs to read: status, code and message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status}${code ? ` ${code}` : ""}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

// The server answers errors as {"error": {"code", "message"}}; key refusals before routing are plain
// text ("unknown or revoked API key", or "CODE: text" with the code in X-Shfeeds-Error).
async function refusal(response) {
  const text = (await response.text()).trim();
  try {
    const { error } = JSON.parse(text);
    if (error && error.message) return new ApiError(response.status, error.code, error.message);
  } catch { /* not JSON: the text itself */ }
  const code = response.headers.get("X-Shfeeds-Error") || "";
  const message = code && text.startsWith(`${code}: `) ? text.slice(code.length + 2) : text;
  return new ApiError(response.status, code, message || response.statusText);
}

function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") q.set(name, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// One call; resolves to the parsed JSON (or the text for CSV), throws ApiError on any refusal or when the
// server cannot be reached.
export async function call(method, path, params, key = session.key()) {
  let response;
  try {
    response = await fetch(`/v1/operator/${path}${query(params)}`, {
      method,
      headers: key ? { Authorization: `Bearer ${key}` } : {},
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    throw new ApiError(0, "unreachable", `the server cannot be reached (${err.message})`);
  }
  if (!response.ok) throw await refusal(response);
  const type = response.headers.get("Content-Type") || "";
  return type.startsWith("application/json") ? response.json() : response.text();
}

export const segment = encodeURIComponent;
