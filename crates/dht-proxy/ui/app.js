// The rdht node page: polls /ui/api/status and /ui/api/routing, gets and listens through the
// proxy's own routes. Data from the network is only ever put in the page with textContent,
// never as HTML.
"use strict";

const POLL_MS = 1500;
const $ = (id) => document.getElementById(id);
let startTime = null;
let listening = null; // AbortController of the listen stream
let failures = 0;
let lost = null; // while the proxy or the node does not answer: { failures }
const MAX_EVENTS = 20;

function setText(id, v) {
  const e = $(id);
  if (e) e.textContent = v === undefined || v === null ? "–" : String(v);
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function banner(msg, info) {
  const b = $("banner");
  if (!msg) {
    b.className = "banner hidden";
    b.textContent = "";
    return;
  }
  b.className = info ? "banner info" : "banner";
  b.textContent = msg;
}

// The connection's history, newest last, bounded: what happened while nobody looked.
function logEvent(text, cls) {
  const list = $("events");
  const li = el("li", new Date().toLocaleTimeString() + " " + text, cls);
  list.append(li);
  while (list.children.length > MAX_EVENTS) list.firstElementChild.remove();
}

function fmtBytes(n) {
  if (n === undefined) return "–";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

function setStatus(id, s) {
  const e = $(id);
  e.textContent = s || "–";
  e.className = "status " + (s || "");
}

// Buckets from /ui/api/routing (typed counts from the node's routing tables); without them,
// one row per family from the node's totals.
function renderBuckets(node, routing) {
  const body = $("bucket-rows");
  const rows = [];
  const fams = [["ipv4", "IPv4"], ["ipv6", "IPv6"]];
  if (routing) {
    for (const [f, name] of fams) {
      for (const b of routing[f] || []) {
        const tr = el("tr", undefined, "bucket");
        tr.dataset.family = f;
        if (b.own) tr.dataset.own = "true";
        const first = el("td", b.first, "mono");
        first.title = b.depth === 0 ? "every id" : "ids starting with " + b.prefix;
        tr.append(el("td", name + (b.own ? " (ours)" : "")), first, el("td", b.depth, "n"),
          el("td", b.good, "n good"), el("td", b.dubious, "n dubious"), el("td", b.bad, "n bad"));
        const bar = el("div", undefined, "bar");
        const total = Math.max(8, b.good + b.dubious + b.bad);
        for (const k of ["good", "dubious", "bad"]) {
          const s = el("span", undefined, k);
          s.style.width = (100 * b[k] / total) + "%";
          bar.append(s);
        }
        const td = el("td");
        td.append(bar);
        tr.append(td);
        rows.push(tr);
      }
    }
  } else if (node.nodes) {
    for (const [f, name] of fams) {
      const n = node.nodes[f];
      const tr = el("tr", undefined, "bucket");
      tr.append(el("td", name), el("td", "(whole table)", "muted"), el("td", "–"),
        el("td", n.good, "n good"), el("td", n.total - n.good, "n dubious"), el("td", "–"), el("td"));
      rows.push(tr);
    }
  }
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", "no nodes known", "muted");
    td.colSpan = 7;
    tr.append(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function renderTraffic(node) {
  const t = node.traffic;
  if (!t) {
    $("traffic-rows").replaceChildren();
    setText("rate-limited", undefined);
    setText("dropped", undefined);
    setText("timeouts", undefined);
    return;
  }
  const rows = t.messages.map((m) => {
    const tr = el("tr");
    tr.append(el("td", m.kind), el("td", m.received, "n"), el("td", m.sent, "n"));
    return tr;
  });
  $("traffic-rows").replaceChildren(...rows);
  setText("rate-limited", t.rate_limited);
  const other = Object.entries(t.dropped)
    .filter(([k, v]) => v > 0 && !k.startsWith("RateLimited"))
    .map(([k, v]) => k + " " + v);
  setText("dropped", other.length ? other.join(", ") : "0");
  setText("timeouts", t.timeouts + " / " + t.retransmits);
}

function render(s, routing) {
  const n = s.node;
  const p = s.proxy;
  setText("node-id", n.node_id);
  setText("network", n.network === undefined ? "–" : n.network === 0 ? "0 (public)" : n.network);
  setStatus("status-ipv4", n.status.ipv4);
  setStatus("status-ipv6", n.status.ipv6);
  setText("public-addresses", n.public_addresses ? (n.public_addresses.join(", ") || "none reported yet") : undefined);
  setText("local-addrs", n.local_addrs ? n.local_addrs.join(", ") : undefined);
  setText("searches", n.searches);
  setText("operations", n.operations);
  setText("pending", n.pending_requests);
  const st = n.storage || {};
  setText("st-keys", st.keys);
  setText("st-values", st.values);
  setText("st-bytes", fmtBytes(st.bytes));
  setText("st-listeners", st.listeners);
  setText("px-connections", p.connections);
  setText("px-listens", p.listens);
  setText("px-puts", p.permanent_puts);
  setText("px-subs", p.subscriptions);
  setText("px-requests", p.requests);
  setText("px-refused", p.refused_connections + " connections, " + p.refused_requests + " requests");
  setText("px-start", new Date(p.start_time * 1000).toLocaleString());
  renderBuckets(n, routing);
  renderTraffic(n);
  setText("updated", new Date().toLocaleTimeString());
}

// The routing tables, or null when the node gives none (the page then shows totals).
async function fetchRouting() {
  try {
    const r = await fetch("api/routing", { cache: "no-store" });
    return r.ok ? await r.json() : null;
  } catch (_) {
    return null;
  }
}

// A poll that failed: the proxy is unreachable, or the node behind it does not answer.
function failed(msg) {
  failures++;
  if (!lost) {
    lost = { failures: 0 };
    logEvent(msg, "lost");
    document.body.dataset.connection = "lost";
  }
  lost.failures++;
  banner(msg + "; retrying…");
}

async function poll() {
  try {
    const r = await fetch("api/status", { cache: "no-store" });
    const s = await r.json();
    if (!r.ok) {
      failed("The node does not answer (" + (s.err || r.status) + ")");
      return;
    }
    const routing = s.node.detailed ? await fetchRouting() : null;
    render(s, routing);
    failures = 0;
    const restarted = startTime !== null && s.proxy.start_time !== startTime;
    const first = startTime === null;
    startTime = s.proxy.start_time;
    const was = lost;
    lost = null;
    document.body.dataset.connection = "ok";
    const n = s.node;
    if (first) {
      logEvent("Connected: node " + n.node_id + ".", "ok");
    } else if (was || restarted) {
      logEvent("Reconnected" + (restarted ? " to the restarted proxy" : "") +
        (was ? " after " + was.failures + " failed poll" + (was.failures === 1 ? "" : "s") : "") +
        ": node " + n.node_id + ".", "ok");
    }
    if (n.status.ipv4 !== "connected" && n.status.ipv6 !== "connected") {
      banner("The node is " + (n.status.ipv4 === "connecting" || n.status.ipv6 === "connecting" ? "connecting" : "disconnected") + ": no good node in either routing table.");
    } else if (was || restarted) {
      banner((restarted ? "The proxy restarted" : "The proxy answers again") + "; the page reconnected.", true);
    } else if ($("banner").className === "banner") {
      banner("");
    }
  } catch (e) {
    failed("The proxy is unreachable (" + (e && e.message ? e.message : e) + ")");
  } finally {
    setTimeout(poll, failures > 5 ? 3 * POLL_MS : POLL_MS);
  }
}

// ----- values

function b64bytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function showData(bytes) {
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (!/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return { text, kind: "text" };
  } catch (_) { /* not UTF-8: hex */ }
  const hex = Array.from(bytes.slice(0, 256), (b) => b.toString(16).padStart(2, "0")).join(" ");
  return { text: hex + (bytes.length > 256 ? " …" : ""), kind: "hex" };
}

const shown = new Map(); // value id -> row

function addValue(v) {
  const id = String(v.id);
  let bytes = new Uint8Array(0);
  let data;
  const flags = [];
  if (v.cypher !== undefined) {
    bytes = b64bytes(v.cypher);
    data = { text: "(encrypted)", kind: "cypher" };
    flags.push("encrypted");
  } else {
    try {
      bytes = b64bytes(v.data || "");
      data = showData(bytes);
    } catch (_) {
      data = { text: "(bad base64)", kind: "bad" };
    }
  }
  if (v.owner) flags.push("signed" + (v.seq !== undefined ? " seq " + v.seq : ""));
  if (v.utype) flags.push("user type " + v.utype);
  if (data.kind === "hex") flags.push("binary");
  const tr = el("tr", undefined, "value");
  tr.dataset.id = id;
  const td = el("td", data.text, "data " + data.kind);
  tr.append(el("td", id), el("td", v.type === undefined ? "–" : v.type), td, el("td", bytes.length + " B", "n"), el("td", flags.join(", ")));
  const old = shown.get(id);
  if (old) old.replaceWith(tr); else $("value-rows").append(tr);
  shown.set(id, tr);
}

function expireValue(v) {
  const tr = shown.get(String(v.id));
  if (tr) tr.className = "value expired";
}

async function resolveKey(name) {
  const r = await fetch("api/hash?s=" + encodeURIComponent(name), { cache: "no-store" });
  if (!r.ok) throw new Error("bad key");
  return (await r.json()).key;
}

// Reads a chunked stream of JSON lines, calling f for each value.
async function readLines(resp, f) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) {
        try { f(JSON.parse(line)); } catch (_) { /* a line we do not read */ }
      }
    }
  }
}

function clearValues() {
  shown.clear();
  $("value-rows").replaceChildren();
}

async function doGet(name) {
  stopListen();
  clearValues();
  const state = $("key-state");
  try {
    const key = await resolveKey(name);
    state.textContent = "Getting " + key + "…";
    const r = await fetch("/key/" + key, { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    await readLines(r, addValue);
    state.textContent = "Get of " + key + " done: " + shown.size + " value" + (shown.size === 1 ? "" : "s") + " found.";
    state.dataset.done = "1";
  } catch (e) {
    state.textContent = "Get failed: " + (e && e.message ? e.message : e);
  }
}

function stopListen() {
  if (listening) {
    listening.abort();
    listening = null;
    $("listen").textContent = "Listen";
  }
}

async function doListen(name) {
  stopListen();
  clearValues();
  const ctl = new AbortController();
  listening = ctl;
  $("listen").textContent = "Stop";
  const state = $("key-state");
  while (listening === ctl) {
    try {
      const key = await resolveKey(name);
      state.textContent = "Listening to " + key + "…";
      const r = await fetch("/key/" + key + "/listen", { cache: "no-store", signal: ctl.signal });
      if (!r.ok) throw new Error("HTTP " + r.status);
      await readLines(r, (v) => (v.expired ? expireValue(v) : addValue(v)));
      if (listening !== ctl) return;
      state.textContent = "The listen stream ended; reopening…";
    } catch (e) {
      if (listening !== ctl) return;
      state.textContent = "The listen stream broke (" + (e && e.message ? e.message : e) + "); reopening…";
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

function init() {
  const params = new URLSearchParams(location.search);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = $("key").value.trim();
    if (k) doGet(k);
  });
  $("listen").addEventListener("click", () => {
    const k = $("key").value.trim();
    if (listening) stopListen(); else if (k) doListen(k);
  });
  const k = params.get("key");
  if (k) {
    $("key").value = k;
    if (params.get("listen")) doListen(k); else doGet(k);
  }
  poll();
}

document.addEventListener("DOMContentLoaded", init);
