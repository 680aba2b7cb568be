// Trend of each scenic area's visitor count, from the counts this page has received: the count now against
// the count about 15 minutes earlier, by the stream layer's rule (streams/logic/aggregation.py): rising or falling
// when it moved by at least max(10, 5 % of the earlier count), else steady. Until the page has a count from
// 15 (up to 20) minutes before the latest one, the trend is not known and no arrow is drawn.

const WINDOW_MS = 15 * 60_000;
const TOLERANCE_MS = 5 * 60_000;
const MIN_CHANGE = 10;
const MIN_RATIO = 0.05;

function visitors(count) {
  return typeof count === "number" ? count : 0; // a banded count ("<10") is below every threshold
}

export class TrendBook {
  constructor() { this.samples = new Map(); } // area code -> [{t, n}] by observed_at

  add(record) {
    const t = record.observed_at;
    if (typeof t !== "number") return;
    const list = this.samples.get(record.id) || [];
    if (list.length && list[list.length - 1].t >= t) return;
    list.push({ t, n: visitors(record.count) });
    while (list.length > 2 && list[1].t <= t - WINDOW_MS - TOLERANCE_MS) list.shift();
    this.samples.set(record.id, list);
  }

  // {label, change, minutes} or null while not known.
  trend(code) {
    const list = this.samples.get(code);
    if (!list || list.length < 2) return null;
    const now = list[list.length - 1];
    let earlier = null;
    for (const s of list) if (s.t <= now.t - WINDOW_MS) earlier = s;
    if (!earlier || earlier.t < now.t - WINDOW_MS - TOLERANCE_MS) return null;
    const change = now.n - earlier.n;
    const threshold = Math.max(MIN_CHANGE, MIN_RATIO * earlier.n);
    const label = change >= threshold ? "rising" : change <= -threshold ? "falling" : "steady";
    return { label, change, minutes: Math.round((now.t - earlier.t) / 60_000) };
  }
}
