// A protocol v1 client for the page, like any other client: one WebSocket, named subscriptions, each
// keeping its entities; `update` moves a subscription's filter (the viewport moved); resume after a drop.

export class Subscription {
  constructor(live, id, feed, filter, onChange) {
    this.live = live;
    this.id = id;
    this.feed = feed;
    this.filter = filter;
    this.onChange = onChange;
    this.entities = new Map(); // id -> record
    this.stale = new Set();
    this.stream = null; this.epoch = null; this.seq = null; this.pos = null;
    this.open = false;
    this.updatesSent = 0;
    this.updatesAnswered = 0;
    this.diffs = 0; // diff deltas applied (one follows each answered update)
  }

  message() {
    const msg = { type: "subscribe", id: this.id, feed: this.feed };
    if (this.filter) msg.filter = this.filter;
    if (this.live.options) msg.options = this.live.options;
    if (this.epoch !== null && this.pos !== null) msg.resume = { epoch: this.epoch, seq: this.seq, pos: this.pos };
    return msg;
  }

  // Move the filter; the server answers `updated` and one diff delta (entered / left).
  update(filter) {
    this.filter = filter;
    if (this.open && this.live.send({ type: "update", id: this.id, filter })) this.updatesSent++;
  }

  close() {
    this.live.subs.delete(this.id);
    if (this.open) this.live.send({ type: "unsubscribe", id: this.id });
    this.open = false;
  }

  _cursor(m) {
    if (m.epoch !== undefined) this.epoch = m.epoch;
    if (m.seq !== undefined) this.seq = m.seq;
    if (m.pos !== undefined) this.pos = m.pos;
  }

  _apply(m) {
    switch (m.type) {
      case "snapshot":
        if (m.part === 0) { this.entities.clear(); this.stale.clear(); }
        for (const r of m.records) this._put(r);
        break;
      case "delta":
        if (m.diff) this.diffs++;
        for (const r of m.upsert) this._put(r);
        for (const id of m.remove) { this.entities.delete(id); this.stale.delete(id); }
        for (const id of m.stale || []) if (this.entities.has(id)) this.stale.add(id);
        break;
      case "reset":
        this.entities.clear(); this.stale.clear();
        break;
    }
    this._cursor(m);
    this.onChange(this, m);
  }

  _put(r) {
    this.entities.set(r.id, r);
    if (r.state === "stale") this.stale.add(r.id); else this.stale.delete(r.id);
  }
}

export class Live {
  constructor({ url, onStatus, options = null }) {
    this.url = url;
    this.options = options; // subscription options for every subscription (the CRS)
    this.onStatus = onStatus;
    this.subs = new Map(); // subscription id -> Subscription
    this.streams = new Map(); // stream -> Set of subscription ids
    this.ws = null;
    this.backoff = 500;
    this.frames = 0;
    this.bytes = 0;
    this.errors = [];
    this.sent = [];
  }

  connect() {
    this.ws = new WebSocket(this.url, ["shfeeds.v1.json"]);
    this.ws.onopen = () => {
      this.backoff = 500;
      this.streams.clear();
      for (const sub of this.subs.values()) { this.send(sub.message()); sub.open = true; }
      this.onStatus("live");
    };
    this.ws.onmessage = (ev) => { this.bytes += ev.data.length; this._handle(JSON.parse(ev.data)); };
    this.ws.onclose = () => {
      for (const sub of this.subs.values()) sub.open = false;
      this.onStatus("reconnecting");
      setTimeout(() => this.connect(), Math.random() * this.backoff); // full jitter
      this.backoff = Math.min(30000, this.backoff * 2);
    };
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.sent.push(msg.type === "update" ? { type: msg.type, id: msg.id, filter: msg.filter, at: Date.now() } : { type: msg.type, id: msg.id });
    if (this.sent.length > 200) this.sent.splice(0, 100);
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  subscribe(id, feed, filter, onChange) {
    const old = this.subs.get(id);
    if (old) old.close();
    const sub = new Subscription(this, id, feed, filter, onChange);
    this.subs.set(id, sub);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.send(sub.message()); sub.open = true; }
    return sub;
  }

  _onStream(stream, id) {
    for (const ids of this.streams.values()) ids.delete(id);
    if (!this.streams.has(stream)) this.streams.set(stream, new Set());
    this.streams.get(stream).add(id);
  }

  _handle(m) {
    this.frames++;
    if (m.type === "subscribed" || m.type === "updated" || m.type === "reset") {
      const sub = this.subs.get(m.id);
      if (!sub) return;
      this._onStream(m.stream, m.id);
      if (m.type === "updated") sub.updatesAnswered++;
      if (m.type === "subscribed" && m.resumed === false) { sub.entities.clear(); sub.stale.clear(); }
      if (m.type === "reset") sub._apply(m); else sub._cursor(m);
      return;
    }
    if (m.type === "snapshot" || m.type === "delta") {
      for (const id of this.streams.get(m.stream) || []) this.subs.get(id)?._apply(m);
      return;
    }
    if (m.type === "error") {
      this.errors.push(m);
      this.onStatus(`error: ${m.code} ${m.message || ""}`.trim());
    }
  }
}
