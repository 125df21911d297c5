// The search page: plain DOM, no framework, no build step. State lives in
// the URL (?q=…&range=15m, or &from=…&to=… for a custom range), so a link
// or a bookmark reruns the same search; ?line=ID shows one line in its file.
// Every text from a log line goes in through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const RANGES = { "15m": "now-15m", "1h": "now-1h", "24h": "now-24h", "7d": "now-7d" };
/** Lines of context asked for on each side, and per "more". */
const CONTEXT = 10;
/** A message longer than this (characters) or lines is folded. */
const FOLD_CHARS = 800;
const FOLD_LINES = 6;
/** Most lines a live view keeps waiting to be shown. */
const LIVE_KEEP = 1000;
let cursor = null;
let live = null;      // the EventSource while following
let pending = [];     // live lines not shown yet, oldest first
let last = null;      // the parameters of the shown results

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

const pad = (n, w = 2) => String(n).padStart(w, "0");

function fmtTime(ms) {
  const d = new Date(ms);
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
}

// An axis label: as much of the time as the bucket width needs.
function fmtTick(ms, interval) {
  const d = new Date(ms);
  const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
  if (interval >= 86400000) return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  if (interval >= 3600000) return pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm;
  if (interval >= 60000) return hm;
  return hm + ":" + pad(d.getSeconds());
}

function el(tagName, cls, text) {
  const e = document.createElement(tagName);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// The message with the matched character ranges in <mark>; text nodes only.
function messageNode(hit) {
  const div = el("div", "msg");
  const chars = Array.from(hit.message);
  let at = 0;
  for (const [s, e] of hit.highlights || []) {
    if (s > at) div.append(chars.slice(at, s).join(""));
    div.append(el("mark", "", chars.slice(s, e).join("")));
    at = e;
  }
  if (at < chars.length) div.append(chars.slice(at).join(""));
  return div;
}

// A value as the query language writes it (quoted when it must be).
function quoted(value) {
  return /[\s()"]/.test(value) || value === "" ? '"' + value.replace(/["\\]/g, "\\$&") + '"' : value;
}

// Adds field:value (or -field:value) to the query and searches.
function addFilter(field, value, exclude) {
  const term = (exclude ? "-" : "") + field + ":" + quoted(value);
  $("q").value = ($("q").value.trim() + " " + term).trim();
  run();
}

function tag(field, value) {
  const t = el("button", "tag " + field, field + ":" + value);
  t.type = "button";
  t.title = "add " + field + ":" + value + " to the query (Alt: exclude it)";
  t.onclick = (ev) => addFilter(field, value, ev.altKey);
  return t;
}

function hitNode(hit, fresh) {
  const li = el("li", "hit" + (fresh ? " fresh" : ""));
  li.dataset.id = hit.id;
  const meta = el("div", "meta");
  const time = el("span", "time", fmtTime(hit.ts_ms));
  time.title = hit["@timestamp"];
  meta.append(time);
  if (hit.host) meta.append(tag("host", hit.host));
  if (hit.path) meta.append(tag("path", hit.path));
  meta.append(tag("topic", hit.topic));
  const ctx = el("button", "act ctx", "context");
  ctx.type = "button";
  ctx.title = "the lines around this one in its file";
  ctx.setAttribute("aria-expanded", "false");
  ctx.onclick = () => toggleContext(hit, li, ctx);
  const link = el("a", "act link", "link");
  link.href = "/?line=" + encodeURIComponent(hit.id);
  link.title = "copy a link to this line";
  link.onclick = (ev) => { ev.preventDefault(); copyLink(link); };
  const acts = el("span", "acts");
  acts.append(ctx, link);
  meta.append(acts);
  li.append(meta);
  appendMessage(li, hit);
  return li;
}

// The message, folded when long, and the button for a cut one.
function appendMessage(li, hit) {
  const msg = messageNode(hit);
  li.append(msg);
  const lines = hit.message.split("\n", FOLD_LINES + 1).length;
  if (hit.message.length > FOLD_CHARS || lines > FOLD_LINES) {
    msg.classList.add("folded");
    const b = el("button", "unfold", "show all");
    b.type = "button";
    b.setAttribute("aria-expanded", "false");
    b.onclick = () => {
      const folded = msg.classList.toggle("folded");
      b.textContent = folded ? "show all" : "fold";
      b.setAttribute("aria-expanded", String(!folded));
    };
    li.append(b);
  }
  if (hit.truncated) li.append(wholeLineButton(hit, li));
}

async function copyLink(a) {
  const url = new URL(a.getAttribute("href"), location.href).toString();
  try {
    await navigator.clipboard.writeText(url);
    a.textContent = "copied";
  } catch (_) {
    // No clipboard (an insecure origin): the address bar gets it instead.
    history.pushState(null, "", url);
    a.textContent = "in the address bar";
  }
  setTimeout(() => { a.textContent = "link"; }, 1500);
}

// A message cut in the answer (http.message_max_bytes): one click fetches
// the whole line from /api/line and shows it in place.
function wholeLineButton(hit, li) {
  const b = el("button", "whole", "… cut here: show the whole line");
  b.type = "button";
  b.onclick = async () => {
    b.disabled = true;
    try {
      const whole = await api("/api/line", new URLSearchParams({ id: hit.id }));
      whole.highlights = [];
      li.querySelector(".msg").replaceWith(messageNode(whole));
      const unfold = li.querySelector(".unfold");
      if (unfold) unfold.remove();
      b.remove();
    } catch (e) {
      b.disabled = false;
      showError(e.message);
    }
  };
  return b;
}

// ---------------------------------------------------------------------------
// Context: the lines around a hit in its file
// ---------------------------------------------------------------------------

function contextLine(h, at) {
  const li = el("li", at ? "at" : "");
  li.dataset.id = h.id;
  const t = el("span", "t", fmtTime(h.ts_ms).slice(11));
  t.title = h["@timestamp"] + (h.offset !== null && h.offset !== undefined ? " · offset " + h.offset : "");
  li.append(t, el("span", "", h.message));
  if (at) li.setAttribute("aria-current", "true");
  return li;
}

function edgeButton(label, onclick) {
  const b = el("button", "edge", label);
  b.type = "button";
  b.onclick = onclick;
  return b;
}

// Shows (or hides) the context of `hit` under `li`.
async function toggleContext(hit, li, button) {
  const open = li.querySelector(".context");
  if (open) {
    open.remove();
    button.setAttribute("aria-expanded", "false");
    return;
  }
  button.setAttribute("aria-expanded", "true");
  const box = el("div", "context");
  box.setAttribute("aria-label", "lines around this one in " + (hit.path || "its file"));
  li.append(box);
  try {
    await showContext(box, hit.id);
  } catch (e) {
    box.replaceChildren(el("span", "none", e.message));
  }
}

// Fills `box` with the context of line `id`: "earlier" and "later" buttons
// fetch more from the first and last line shown.
async function showContext(box, id) {
  const c = await api("/api/context", new URLSearchParams({ id, before: CONTEXT, after: CONTEXT }));
  const list = el("ol");
  list.append(...c.before.map((h) => contextLine(h, false)), contextLine(c.hit, true),
    ...c.after.map((h) => contextLine(h, false)));
  box.replaceChildren();
  if (!c.hit.path) {
    box.append(el("span", "none", "This line did not come from a file: it has no neighbours."));
  }
  const earlier = edgeButton("earlier lines", async () => {
    earlier.disabled = true;
    const first = list.firstElementChild.dataset.id;
    const m = await api("/api/context", new URLSearchParams({ id: first, before: CONTEXT * 5, after: 0 }));
    list.prepend(...m.before.map((h) => contextLine(h, false)));
    earlier.disabled = false;
    earlier.hidden = !m.more_before;
  });
  const later = edgeButton("later lines", async () => {
    later.disabled = true;
    const lastId = list.lastElementChild.dataset.id;
    const m = await api("/api/context", new URLSearchParams({ id: lastId, before: 0, after: CONTEXT * 5 }));
    list.append(...m.after.map((h) => contextLine(h, false)));
    later.disabled = false;
    later.hidden = !m.more_after;
  });
  earlier.hidden = !c.more_before;
  later.hidden = !c.more_after;
  box.append(earlier, list, later);
  return c;
}

// ?line=ID: that line in its file, instead of a search.
async function showLine(id) {
  $("line-view").hidden = false;
  $("chart").hidden = true;
  $("more").hidden = true;
  const li = el("li", "hit");
  const box = el("div", "context");
  li.append(box);
  $("results").replaceChildren(li);
  try {
    const c = await showContext(box, id);
    $("line-title").textContent = "One line of " + (c.hit.host || "") + " " + (c.hit.path || c.hit.topic) +
      ", " + fmtTime(c.hit.ts_ms) + ", with the lines around it.";
  } catch (e) {
    showError(e.message);
  } finally {
    document.body.dataset.state = "done";
  }
}

// ---------------------------------------------------------------------------
// Fields: the side panel
// ---------------------------------------------------------------------------

function drawFields(f) {
  const list = $("field-list");
  list.replaceChildren();
  for (const field of f.fields) {
    const box = el("section", "field");
    box.dataset.field = field.field;
    box.append(el("h2", "", field.field));
    const ol = el("ol");
    const most = Math.max(1, ...field.values.map((v) => v.count));
    for (const v of field.values) {
      const li = el("li", "fv");
      const bar = el("span", "bar");
      bar.style.width = Math.round((v.count / most) * 100) + "%";
      const val = el("button", "val", v.value);
      val.type = "button";
      val.title = field.field + ":" + v.value + " (click to filter, Alt-click to exclude)";
      val.onclick = (ev) => addFilter(field.field, v.value, ev.altKey);
      const n = el("span", "n", v.count.toLocaleString("en-US"));
      const not = el("button", "not", "−");
      not.type = "button";
      not.title = "exclude " + field.field + ":" + v.value;
      not.setAttribute("aria-label", "exclude " + field.field + ":" + v.value);
      not.onclick = () => addFilter(field.field, v.value, true);
      li.append(bar, val, n, not);
      ol.append(li);
    }
    box.append(ol);
    if (field.other > 0) box.append(el("div", "other", "others: " + field.other.toLocaleString("en-US")));
    if (!field.values.length) box.append(el("div", "other", "none"));
    list.append(box);
  }
}

// ---------------------------------------------------------------------------
// Histogram: bars, axis labels, hover counts, drag to zoom
// ---------------------------------------------------------------------------

let hist = null;

function drawHistogram(h) {
  hist = h;
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
  $("ymax").textContent = max.toLocaleString("en-US");
  // About six labels, on bucket edges.
  const axis = $("axis");
  axis.replaceChildren();
  const step = Math.max(1, Math.ceil(n / 6));
  // (A label within half a step of the end one would overlap it.)
  for (let i = 0; i < n && (i === 0 || n - i > step / 2); i += step) {
    const s = el("span", "", fmtTick(h.buckets[i].key_ms, h.interval_ms));
    s.style.left = (i / n) * 100 + "%";
    axis.append(s);
  }
  const end = el("span", "", fmtTick(h.to_ms - 1, h.interval_ms));
  end.style.left = "100%";
  axis.append(end);
}

// The bucket index under a mouse x.
function bucketAt(clientX) {
  const box = $("histogram").getBoundingClientRect();
  const n = hist ? hist.buckets.length : 0;
  const i = Math.floor(((clientX - box.left) / box.width) * n);
  return Math.max(0, Math.min(n - 1, i));
}

let drag = null; // {from: bucket index} while dragging

function hover(ev) {
  if (!hist || !hist.buckets.length) return;
  point(bucketAt(ev.clientX), drag ? drag.from : null);
}

// Shows bucket i's time and count, and the selection from `from` to i.
function point(i, from) {
  const b = hist.buckets[i];
  const box = $("histogram").getBoundingClientRect();
  const tip = $("tip");
  tip.textContent = fmtTime(b.key_ms) + " · " + b.count.toLocaleString("en-US") + (b.count === 1 ? " line" : " lines");
  tip.style.left = ((i + 0.5) / hist.buckets.length) * box.width + "px";
  tip.hidden = false;
  for (const r of $("histogram").querySelectorAll("rect.hover")) r.classList.remove("hover");
  const rect = $("histogram").children[i];
  if (rect) rect.classList.add("hover");
  const sel = $("select");
  if (from === null) {
    sel.hidden = true;
    return;
  }
  const [lo, hi] = [Math.min(from, i), Math.max(from, i)];
  sel.style.left = (lo / hist.buckets.length) * 100 + "%";
  sel.style.width = ((hi - lo + 1) / hist.buckets.length) * 100 + "%";
  sel.hidden = false;
}

function unhover() {
  $("tip").hidden = true;
  for (const r of $("histogram").querySelectorAll("rect.hover")) r.classList.remove("hover");
}

// Zooms to buckets lo..hi (inclusive): a custom range, searched at once.
function zoom(lo, hi) {
  const from = hist.buckets[lo].key_ms;
  const to = Math.min(hist.to_ms, hist.buckets[hi].key_ms + hist.interval_ms) - 1;
  const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  $("range").value = "custom";
  $("custom").hidden = false;
  $("from").value = local(Math.max(from, hist.from_ms));
  $("to").value = local(to + 1000); // datetime-local has whole seconds: round up
  run();
}

function wireHistogram() {
  const bars = $("bars");
  bars.addEventListener("mousemove", hover);
  bars.addEventListener("mouseleave", () => { if (!drag) unhover(); });
  bars.addEventListener("mousedown", (ev) => {
    if (!hist || !hist.buckets.length || ev.button !== 0) return;
    ev.preventDefault();
    drag = { from: bucketAt(ev.clientX) };
  });
  window.addEventListener("mouseup", (ev) => {
    if (!drag) return;
    const to = bucketAt(ev.clientX);
    const [lo, hi] = [Math.min(drag.from, to), Math.max(drag.from, to)];
    drag = null;
    $("select").hidden = true;
    unhover();
    // A click without a drag zooms to its bucket too.
    zoom(lo, hi);
  });
  // The keyboard: arrows move along the bars (Shift extends a
  // selection), Enter zooms to the selection or the bar.
  let at = null;
  let from = null;
  bars.addEventListener("keydown", (ev) => {
    if (!hist || !hist.buckets.length) return;
    const n = hist.buckets.length;
    if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
      ev.preventDefault();
      if (at === null) at = ev.key === "ArrowLeft" ? n - 1 : 0;
      else if (ev.shiftKey && from === null) from = at;
      if (!ev.shiftKey) from = null;
      at = Math.max(0, Math.min(n - 1, at + (ev.key === "ArrowLeft" ? -1 : 1)));
      point(at, from);
    } else if ((ev.key === "Enter" || ev.key === " ") && at !== null) {
      ev.preventDefault();
      const [lo, hi] = from === null ? [at, at] : [Math.min(from, at), Math.max(from, at)];
      at = from = null;
      $("select").hidden = true;
      unhover();
      zoom(lo, hi);
    }
  });
  bars.addEventListener("blur", () => { at = from = null; $("select").hidden = true; unhover(); });
}

// ---------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------

function downloadLinks(p) {
  for (const format of ["ndjson", "csv"]) {
    const d = new URLSearchParams(p);
    d.set("format", format);
    $("dl-" + format).href = "/api/download?" + d.toString();
  }
}

async function run() {
  stopLive();
  $("line-view").hidden = true;
  $("chart").hidden = false;
  const p = params();
  const url = new URLSearchParams();
  url.set("q", $("q").value);
  url.set("range", $("range").value);
  if ($("range").value === "custom") {
    if (p.get("from")) url.set("from", p.get("from"));
    if (p.get("to")) url.set("to", p.get("to"));
  }
  history.replaceState(null, "", "?" + url.toString());
  downloadLinks(p);
  showError("");
  document.body.classList.add("busy");
  try {
    const fields = api("/api/fields", p).catch((e) => ({ error: e }));
    const [page, h] = await Promise.all([api("/api/search", p), api("/api/histogram", p)]);
    last = p;
    $("results").replaceChildren(...page.hits.map((x) => hitNode(x, false)));
    $("count").textContent = page.total.toLocaleString("en-US") + (page.total === 1 ? " match" : " matches");
    $("took").textContent = "(" + page.took_ms + " ms)";
    cursor = page.cursor || null;
    $("more").hidden = !cursor;
    drawHistogram(h);
    const f = await fields;
    if (f.error) {
      $("field-list").replaceChildren(el("div", "other", f.error.message));
    } else {
      drawFields(f);
    }
  } catch (e) {
    showError(e.message);
    $("results").replaceChildren();
    $("field-list").replaceChildren();
    $("count").textContent = "";
    $("took").textContent = "";
    $("histogram").replaceChildren();
    $("axis").replaceChildren();
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

// ---------------------------------------------------------------------------
// Live: new lines wait behind a "N new lines" button instead of moving what
// is being read; Pause stops following, Resume follows again from then on.
// ---------------------------------------------------------------------------

function showFreshCount() {
  const b = $("fresh");
  b.hidden = pending.length === 0;
  b.textContent = pending.length.toLocaleString("en-US") + (pending.length === 1 ? " new line" : " new lines") +
    (pending.length >= LIVE_KEEP ? " (the newest " + LIVE_KEEP + ")" : "") + " · show";
}

function showFresh() {
  const list = $("results");
  // Newest first, as the results are.
  list.prepend(...pending.reverse().map((h) => hitNode(h, true)));
  pending = [];
  while (list.children.length > 2000) list.lastChild.remove();
  showFreshCount();
  $("results").firstElementChild?.querySelector("button, a")?.focus();
}

function follow() {
  const p = new URLSearchParams({ q: $("q").value });
  live = new EventSource("/api/live?" + p.toString());
  live.addEventListener("hit", (ev) => {
    pending.push(JSON.parse(ev.data));
    if (pending.length > LIVE_KEEP) pending.splice(0, pending.length - LIVE_KEEP);
    showFreshCount();
  });
  live.addEventListener("error", (ev) => {
    if (ev.data) showError(JSON.parse(ev.data).error);
    if (live && live.readyState === EventSource.CLOSED) stopLive();
  });
}

function stopLive() {
  if (live) live.close();
  live = null;
  pending = [];
  showFreshCount();
  $("live").classList.remove("on");
  $("live").setAttribute("aria-pressed", "false");
  $("live").textContent = "Live";
  $("pause").hidden = true;
  $("pause").classList.remove("on");
}

function toggleLive() {
  if ($("live").classList.contains("on")) return stopLive();
  $("live").classList.add("on");
  $("live").setAttribute("aria-pressed", "true");
  $("live").textContent = "Live ●";
  $("pause").hidden = false;
  $("pause").textContent = "Pause";
  follow();
}

function togglePause() {
  const b = $("pause");
  if (live) {
    live.close();
    live = null;
    b.textContent = "Resume";
    b.classList.add("on");
    $("live").textContent = "Live ❚❚";
  } else {
    follow();
    b.textContent = "Pause";
    b.classList.remove("on");
    $("live").textContent = "Live ●";
  }
}

// ---------------------------------------------------------------------------

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
  return u.get("line");
}

$("search").addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
$("range").addEventListener("change", () => { $("custom").hidden = $("range").value !== "custom"; run(); });
$("more").addEventListener("click", more);
$("live").addEventListener("click", toggleLive);
$("pause").addEventListener("click", togglePause);
$("fresh").addEventListener("click", showFresh);
// "/" anywhere but in a text field goes to the search box.
document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
    ev.preventDefault();
    $("q").focus();
    $("q").select();
  } else if (ev.key === "Escape" && t === $("q")) {
    $("q").blur();
  }
});
wireHistogram();
if (window.matchMedia("(max-width: 800px)").matches) $("fields-box").open = false;
fetch("/api/info").then((r) => r.json()).then((i) => { $("backend").textContent = "searching " + i.backend + " · v" + i.version; }).catch(() => {});
const line = fromUrl();
if (line) showLine(line); else run();
