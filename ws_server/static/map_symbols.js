// Symbology of each feed: which class a record falls in, the class colours the legend shows, and the
// record's fields in words for the popup. Colours are fully opaque so a screenshot shows them exactly.

export const STALE = { key: "stale", colour: "#9aa0a6", zh: "过时", en: "stale (no recent report)" };
const UNKNOWN = { key: "unknown", colour: "#3a6ea5", zh: "无数据", en: "no data" };

const GREEN = "#1a9850", AMBER = "#f4a300", ORANGE = "#e8590c", RED = "#c1121f";

// Shanghai Metro line colours, keyed by the route id the metro feed uses ("1" … "18").
export const METRO_LINE_COLOURS = {
  "1": "#E3002B", "2": "#8CC220", "3": "#FCD600", "4": "#461D84", "5": "#944D9A", "6": "#D40068",
  "7": "#ED6F00", "8": "#0094D8", "9": "#87CAED", "10": "#C7AFD3", "11": "#871C2B", "12": "#007A60",
  "13": "#E999C0", "14": "#626020", "15": "#BCA886", "16": "#98D1C0", "17": "#BC796F", "18": "#C4984F",
};

const OCCUPANCY_WORDS = {
  EMPTY: ["空车", "empty"],
  MANY_SEATS_AVAILABLE: ["座位充足", "many seats free"],
  FEW_SEATS_AVAILABLE: ["座位不多", "few seats free"],
  STANDING_ROOM_ONLY: ["仅可站立", "standing room only"],
  CRUSHED_STANDING_ROOM_ONLY: ["非常拥挤", "crushed standing"],
  FULL: ["满载", "full"],
  NOT_ACCEPTING_PASSENGERS: ["不载客", "not taking passengers"],
  NO_DATA_AVAILABLE: ["无数据", "no data"],
  NOT_BOARDABLE: ["不可上车", "not boardable"],
};

const BUS_CLASSES = [
  { key: "seats", colour: GREEN, zh: "有座", en: "seats free", status: ["EMPTY", "MANY_SEATS_AVAILABLE"] },
  { key: "few", colour: AMBER, zh: "座位不多", en: "few seats", status: ["FEW_SEATS_AVAILABLE"] },
  { key: "standing", colour: ORANGE, zh: "站立", en: "standing only", status: ["STANDING_ROOM_ONLY"] },
  { key: "full", colour: RED, zh: "拥挤/满载", en: "crowded or full",
    status: ["CRUSHED_STANDING_ROOM_ONLY", "FULL", "NOT_ACCEPTING_PASSENGERS", "NOT_BOARDABLE"] },
  UNKNOWN,
];

const PARKING_CLASSES = [
  { key: "plenty", colour: GREEN, zh: "空位 > 20", en: "more than 20 free" },
  { key: "some", colour: AMBER, zh: "空位 6–20", en: "6–20 free" },
  { key: "few", colour: ORANGE, zh: "空位 1–5", en: "1–5 free" },
  { key: "full", colour: RED, zh: "已满/关闭", en: "full or closed" },
  UNKNOWN,
];

const CHARGING_CLASSES = [
  { key: "most", colour: GREEN, zh: "过半空闲", en: "half or more free" },
  { key: "some", colour: AMBER, zh: "少量空闲", en: "some free" },
  { key: "none", colour: RED, zh: "无空闲", en: "none free" },
  UNKNOWN,
];

export const COMFORT = [
  { key: "comfortable", colour: GREEN, zh: "舒适", en: "comfortable" },
  { key: "moderate", colour: AMBER, zh: "较舒适", en: "moderate" },
  { key: "busy", colour: ORANGE, zh: "拥挤", en: "busy" },
  { key: "crowded", colour: RED, zh: "很拥挤", en: "crowded" },
  UNKNOWN,
];

export const TREND_ARROWS = {
  rising: { arrow: "↑", zh: "人数上升", en: "rising" },
  falling: { arrow: "↓", zh: "人数下降", en: "falling" },
  steady: { arrow: "→", zh: "持平", en: "steady" },
};

function byKey(classes, key) { return classes.find((c) => c.key === key) || UNKNOWN; }

function busClass(r) {
  return BUS_CLASSES.find((c) => c.status && c.status.includes(r.occupancy_status)) || UNKNOWN;
}

// Free slots: an exact number when the tier releases it, else the public band ("0", "1-5", ">5"; the band
// is only used for lots of under 20 slots, so ">5" means 6–19).
export function parkingClass(r) {
  if (r.status === "closed" || r.status === "full") return byKey(PARKING_CLASSES, "full");
  const band = r.free_band;
  if (typeof r.free === "number") {
    if (r.free === 0) return byKey(PARKING_CLASSES, "full");
    if (r.free <= 5) return byKey(PARKING_CLASSES, "few");
    return byKey(PARKING_CLASSES, r.free <= 20 ? "some" : "plenty");
  }
  if (band === "0") return byKey(PARKING_CLASSES, "full");
  if (band === "1-5") return byKey(PARKING_CLASSES, "few");
  if (band === ">5") return byKey(PARKING_CLASSES, "some");
  return UNKNOWN;
}

// Available of total connectors, from whichever the tier releases: the per-type summary or the list.
export function connectorCounts(r) {
  if (r.connector_summary && typeof r.connector_summary === "object") {
    let available = 0, total = 0;
    for (const s of Object.values(r.connector_summary)) { available += s.available || 0; total += s.total || 0; }
    return { available, total };
  }
  if (Array.isArray(r.connectors)) {
    return {
      available: r.connectors.filter((c) => c.status === "AVAILABLE").length,
      total: r.connectors.length,
    };
  }
  return null;
}

export function chargingClass(r) {
  const n = connectorCounts(r);
  if (!n || n.total === 0) return UNKNOWN;
  if (n.available === 0) return byKey(CHARGING_CLASSES, "none");
  return byKey(CHARGING_CLASSES, n.available * 2 >= n.total ? "most" : "some");
}

// The metro feed names a line "1" … "16" or, with the GTFS static ids, "M1" … "M16".
export function metroLine(routeId) { return String(routeId ?? "?").replace(/^M/, ""); }

function metroClass(r) {
  const line = metroLine(r.route_id);
  const colour = METRO_LINE_COLOURS[line];
  return colour ? { key: `line-${line}`, colour, zh: `${line}号线`, en: `Line ${line}` } : UNKNOWN;
}

export const FEEDS = {
  bus: { zh: "公交车 · 载客", en: "Buses by occupancy", classes: BUS_CLASSES, classify: busClass, cluster: true },
  metro: {
    zh: "地铁列车 · 线路", en: "Metro trains by line",
    // The lines of the bundled network (geo/data: 2017, lines 1–13 and 16).
    classes: ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "16"]
      .map((id) => ({ key: `line-${id}`, colour: METRO_LINE_COLOURS[id], zh: `${id}号线`, en: `Line ${id}` })),
    classify: metroClass, cluster: false,
  },
  parking: { zh: "停车场 · 空位", en: "Car parks by free slots", classes: PARKING_CLASSES, classify: parkingClass,
    cluster: true },
  charging: { zh: "充电站 · 空闲桩", en: "Chargers by free connectors", classes: CHARGING_CLASSES,
    classify: chargingClass, cluster: true },
  scenic: { zh: "景区 · 舒适度", en: "Scenic areas by comfort", classes: COMFORT,
    classify: (r) => byKey(COMFORT, r.comfort_band), cluster: false },
};

export function classOf(feed, record, stale) {
  if (stale || record.state === "stale") return STALE;
  return FEEDS[feed].classify(record);
}

// ---------------------------------------------------------------------------------------------- words

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

const COMPASS = ["北 N", "东北 NE", "东 E", "东南 SE", "南 S", "西南 SW", "西 W", "西北 NW"];
const LOT_KINDS = {
  commuter: "办公 office", shopping: "商场 shopping", scenic: "景区 scenic area", hospital: "医院 hospital",
  transit: "交通枢纽 transit hub", other: "其他 other",
};
const LOT_STATUS = { open: "开放 open", closed: "关闭 closed", full: "已满 full", unknown: "未知 unknown" };
const CONNECTOR_STATUS = {
  AVAILABLE: "空闲 free", CHARGING: "充电中 charging", RESERVED: "已预约 reserved", FAULTED: "故障 faulted",
  OFFLINE: "离线 offline", UNKNOWN: "未知 unknown",
};

function when(ms) {
  if (typeof ms !== "number") return "—";
  const ago = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const clock = new Date(ms).toLocaleTimeString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
  return ago < 120 ? `${clock}（${ago} 秒前 s ago）` : `${clock}（${Math.round(ago / 60)} 分钟前 min ago）`;
}

function count(value) {
  return typeof value === "number" ? value.toLocaleString("en") : String(value);
}

// The record's fields as [label, value] rows, in words; `names` resolves ids (stations, districts).
export function describe(feed, r, stale, names, extra = {}) {
  const rows = [];
  let title = "";
  const cls = classOf(feed, r, stale);
  if (feed === "bus" || feed === "metro") {
    title = feed === "bus" ? `公交 ${r.route_id ?? "?"} 路 · Bus route ${r.route_id ?? "?"}`
      : `地铁 ${metroLine(r.route_id)} 号线 · Metro line ${metroLine(r.route_id)}`;
    if (r.label) rows.push(["车号 Vehicle", r.label]);
    if (r.direction_id !== undefined) rows.push(["方向 Direction", r.direction_id === 0 ? "去程 outbound" : "返程 inbound"]);
    if (r.occupancy_status) rows.push(["载客 Occupancy", (OCCUPANCY_WORDS[r.occupancy_status] || [r.occupancy_status]).join(" ")]);
    if (typeof r.occupancy_pct === "number") rows.push(["满载率 Load", `${r.occupancy_pct} %`]);
    if (typeof r.bearing === "number") rows.push(["朝向 Heading", COMPASS[Math.round(r.bearing / 45) % 8]]);
    if (typeof r.speed_kmh === "number") rows.push(["速度 Speed", `${r.speed_kmh} km/h`]);
    const station = r.stop_id && names.station(r.stop_id);
    if (station) rows.push(["车站 Station", station]);
    const next = r.next_stop_id && names.station(r.next_stop_id);
    if (next) rows.push(["下一站 Next", next]);
    if (typeof r.delay_s === "number") rows.push(["晚点 Delay", `${Math.round(r.delay_s / 60)} min`]);
  } else if (feed === "parking") {
    title = r.name || "停车场 Car park";
    if (typeof r.free === "number") rows.push(["空位 Free", `${count(r.free)} / ${count(r.capacity ?? "?")}`]);
    else if (r.free_band) rows.push(["空位 Free", `${r.free_band}（小型停车场只公布区间 small lot: band only）`]);
    if (typeof r.capacity === "number" && typeof r.free !== "number") rows.push(["车位 Slots", count(r.capacity)]);
    rows.push(["类型 Kind", LOT_KINDS[r.kind] || r.kind || "—"]);
    rows.push(["状态 Status", LOT_STATUS[r.status] || r.status || "—"]);
  } else if (feed === "charging") {
    title = r.name || "充电站 Charging station";
    if (r.operator) rows.push(["运营商 Operator", r.operator]);
    const n = connectorCounts(r);
    if (n) rows.push(["空闲 Free", `${n.available} / ${n.total} 个充电桩 connectors`]);
    if (r.connector_summary) {
      for (const [type, s] of Object.entries(r.connector_summary)) rows.push([type.replaceAll("_", " "), `${s.available} / ${s.total}`]);
    } else if (Array.isArray(r.connectors)) {
      for (const c of r.connectors.slice(0, 8)) rows.push([`${c.type || ""}`.replaceAll("_", " "), CONNECTOR_STATUS[c.status] || c.status]);
    }
  } else if (feed === "scenic") {
    const area = names.area(r.id);
    title = area ? `${area.name_zh} · ${area.name_en}` : (r.name || r.id);
    rows.push(["游客 Visitors", `${count(r.count)}${typeof r.capacity === "number" ? ` / ${count(r.capacity)}` : ""}`]);
    rows.push(["舒适度 Comfort", `${cls.zh} ${cls.en}`]);
    const trend = extra.trend && TREND_ARROWS[extra.trend.label];
    rows.push(["趋势 Trend", trend ? `${trend.arrow} ${trend.zh} ${trend.en}（${extra.trend.minutes} 分钟 min）`
      : "待定 not known yet"]);
    if (area) rows.push(["等级 Level", area.level]);
  }
  const district = r.district && names.district(r.district);
  if (district) rows.push(["区 District", district]);
  rows.push(["类别 Class", `${cls.zh} ${cls.en}`]);
  rows.push(["更新 Updated", when(r.observed_at)]);
  if (stale || r.state === "stale") rows.push(["注意 Note", "已过时：超过有效期未更新 stale: no report before it expired"]);
  return { title, rows };
}

export function describeHtml(d) {
  const rows = d.rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join("");
  return `<h3>${escapeHtml(d.title)}</h3><dl>${rows}</dl>`;
}
