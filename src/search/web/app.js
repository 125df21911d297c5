// The search page: plain DOM, no framework, no build step. State lives in
// the URL (?q=…&range=15m, or &from=…&to=… for a custom range), so a link
// or a bookmark reruns the same search.
"use strict";

const $ = (id) => document.getElementById(id);
const RANGES = { "15m": "now-15m", "1h": "now-1h", "24h": "now-24h", "7d": "now-7d" };
let cursor = null;
let live = null;
let last = null; // the parameters of the shown results

function params() {
  const p = new URLSearchParams();
  p.set("q", $("q").value);
  const r = $("range").value;
  if (r === "custom") {
    if ($("from").value) p.set("from", new Date($("from").value).toISOString());
    if ($("to").value) p.set("to", new Date($("to").value).toISOString());
  } else {
    p.set("from", RANGES[r]);
    p.set("to", "now");
  }
  return p;
}

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
}

async function api(path, p) {
  const res = await fetch(path + "?" + p.toString());
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    let msg = (body && body.error) || ("HTTP " + res.status);
    if (body && body.param === "q" && typeof body.position === "number") {
      msg += "\n" + $("q").value + "\n" + " ".repeat(body.position) + "^";
    }
    throw new Error(msg);
  }
  return body;
}

function fmtTime(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
}

// The message with the matched character ranges in <mark>; text nodes only.
function messageNode(hit) {
  const div = document.createElement("div");
  div.className = "msg";
  const chars = Array.from(hit.message);
  let at = 0;
  for (const [s, e] of hit.highlights || []) {
    if (s > at) div.append(chars.slice(at, s).join(""));
    const m = document.createElement("mark");
    m.textContent = chars.slice(s, e).join("");
    div.append(m);
    at = e;
  }
  if (at < chars.length) div.append(chars.slice(at).join(""));
  return div;
}

function tag(field, value) {
  const t = document.createElement("span");
  t.className = "tag " + field;
  t.textContent = field + ":" + value;
  t.title = "add " + field + ":" + value + " to the query";
  t.onclick = () => {
    const v = /[\s()"]/.test(value) ? '"' + value.replace(/["\\]/g, "\\$&") + '"' : value;
    $("q").value = ($("q").value.trim() + " " + field + ":" + v).trim();
    run();
  };
  return t;
}

function hitNode(hit, fresh) {
  const li = document.createElement("li");
  li.className = "hit" + (fresh ? " fresh" : "");
  li.dataset.id = hit.id;
  const meta = document.createElement("div");
  meta.className = "meta";
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = fmtTime(hit.ts_ms);
  time.title = hit["@timestamp"];
  meta.append(time);
  if (hit.host) meta.append(tag("host", hit.host));
  if (hit.path) meta.append(tag("path", hit.path));
  meta.append(tag("topic", hit.topic));
  li.append(meta, messageNode(hit));
  if (hit.truncated) li.append(wholeLineButton(hit, li));
  return li;
}

// A message cut in the answer (http.message_max_bytes): one click fetches
// the whole line from /api/line and shows it in place.
function wholeLineButton(hit, li) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "whole";
  b.textContent = "… cut here: show the whole line";
  b.onclick = async () => {
    b.disabled = true;
    try {
      const p = new URLSearchParams();
      p.set("id", hit.id);
      const whole = await api("/api/line", p);
      whole.highlights = [];
      li.querySelector(".msg").replaceWith(messageNode(whole));
      b.remove();
    } catch (e) {
      b.disabled = false;
      showError(e.message);
    }
  };
  return b;
}

function drawHistogram(h) {
  const svg = $("histogram");
  svg.replaceChildren();
  const n = h.buckets.length;
  const max = Math.max(1, ...h.buckets.map((b) => b.count));
  svg.setAttribute("viewBox", "0 0 " + n + " 100");
  h.buckets.forEach((b, i) => {
    const height = b.count ? Math.max(2, (b.count / max) * 96) : 0;
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    r.setAttribute("class", "bar");
    r.setAttribute("x", i + 0.1);
    r.setAttribute("width", 0.8);
    r.setAttribute("y", 100 - height);
    r.setAttribute("height", height);
    r.dataset.count = b.count;
    r.dataset.key = b.key_ms;
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = fmtTime(b.key_ms) + ": " + b.count;
    r.append(title);
    svg.append(r);
  });
  $("axis-from").textContent = fmtTime(h.from_ms);
  $("axis-to").textContent = fmtTime(h.to_ms - 1);
}

async function run() {
  stopLive();
  const p = params();
  const url = new URLSearchParams();
  url.set("q", $("q").value);
  url.set("range", $("range").value);
  if ($("range").value === "custom") {
    if (p.get("from")) url.set("from", p.get("from"));
    if (p.get("to")) url.set("to", p.get("to"));
  }
  history.replaceState(null, "", "?" + url.toString());
  showError("");
  document.body.classList.add("busy");
  try {
    const [page, hist] = await Promise.all([api("/api/search", p), api("/api/histogram", p)]);
    last = p;
    $("results").replaceChildren(...page.hits.map((h) => hitNode(h, false)));
    $("count").textContent = page.total.toLocaleString("en-US") + (page.total === 1 ? " match" : " matches");
    $("took").textContent = "(" + page.took_ms + " ms)";
    cursor = page.cursor || null;
    $("more").hidden = !cursor;
    drawHistogram(hist);
  } catch (e) {
    showError(e.message);
    $("results").replaceChildren();
    $("count").textContent = "";
    $("took").textContent = "";
    $("histogram").replaceChildren();
    $("more").hidden = true;
  } finally {
    document.body.classList.remove("busy");
    document.body.dataset.state = "done";
  }
}

async function more() {
  if (!cursor || !last) return;
  const p = new URLSearchParams(last);
  p.set("cursor", cursor);
  try {
    const page = await api("/api/search", p);
    $("results").append(...page.hits.map((h) => hitNode(h, false)));
    cursor = page.cursor || null;
    $("more").hidden = !cursor;
  } catch (e) {
    showError(e.message);
  }
}

function stopLive() {
  if (live) live.close();
  live = null;
  $("live").classList.remove("on");
  $("live").textContent = "Live";
}

function toggleLive() {
  if (live) return stopLive();
  const p = new URLSearchParams({ q: $("q").value });
  live = new EventSource("/api/live?" + p.toString());
  $("live").classList.add("on");
  $("live").textContent = "Live ●";
  live.addEventListener("hit", (ev) => {
    const hit = JSON.parse(ev.data);
    const list = $("results");
    list.prepend(hitNode(hit, true));
    while (list.children.length > 1000) list.lastChild.remove();
  });
  live.addEventListener("error", (ev) => {
    if (ev.data) showError(JSON.parse(ev.data).error);
    if (live && live.readyState === EventSource.CLOSED) stopLive();
  });
}

function fromUrl() {
  const u = new URLSearchParams(location.search);
  $("q").value = u.get("q") || "";
  const r = u.get("range") || "15m";
  $("range").value = r in RANGES || r === "custom" ? r : "15m";
  const local = (iso) => {
    const d = new Date(iso);
    return isNaN(d) ? "" : new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  };
  if (u.get("from")) $("from").value = local(u.get("from"));
  if (u.get("to")) $("to").value = local(u.get("to"));
  $("custom").hidden = $("range").value !== "custom";
}

$("search").addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
$("range").addEventListener("change", () => { $("custom").hidden = $("range").value !== "custom"; run(); });
$("more").addEventListener("click", more);
$("live").addEventListener("click", toggleLive);
fetch("/api/info").then((r) => r.json()).then((i) => { $("backend").textContent = "searching " + i.backend + " · v" + i.version; }).catch(() => {});
fromUrl();
run();
