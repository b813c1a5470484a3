// tq dashboard: three views behind the URL's #fragment (overview, tasks, one task), polled
// from the JSON API. No framework, no build step. Everything that comes from a task (payload,
// error, traceback, names) is inserted with textContent or as an attribute value, never
// parsed as HTML. Long values come as previews (t.truncated names them, with their sizes);
// the task page links each to its full value.
"use strict";

const POLL_MS = 1000;
const DEAD_REFRESH_MS = 5000;
const HOUR = 3600;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);

// -- small helpers ------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fill(tbody, rows, emptyText, columns) {
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el("tr", {}, el("td", {colspan: columns, class: "muted"}, emptyText)));
  }
  for (const r of rows) tbody.append(r);
}

const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

function rate(n) {
  if (n >= 100) return Math.round(n).toLocaleString("en-US");
  return n.toFixed(n >= 10 ? 1 : 2);
}

function secs(s) {
  if (s === null || s === undefined) return "–";
  if (s < 0.001) return `${Math.round(s * 1e6)} µs`;
  if (s < 1) return `${+(s * 1000).toPrecision(3)} ms`;
  if (s < 60) return `${+s.toPrecision(3)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

// The histogram bucket a percentile lies in ([low, high], high null: no upper bound), with
// one unit when both ends share it: "250–300 ms", "800 ms–1 s", "> 300 s".
function secsRange(bounds) {
  if (!bounds) return "";
  const [low, high] = bounds;
  if (high === null || high === undefined) return `> ${secs(low)}`;
  if (!low) return `≤ ${secs(high)}`;
  const a = secs(low), b = secs(high);
  const unit = (t) => t.slice(t.lastIndexOf(" "));
  return unit(a) === unit(b) && /^[\d.]+ /.test(a) ? `${a.slice(0, a.lastIndexOf(" "))}–${b}` : `${a}–${b}`;
}

// A percentile cell: the interpolated figure, and under it the bucket the true value lies in.
function percentileCell(summary, name) {
  const bounds = (summary.bounds || {})[name];
  return el("td", {class: "num"}, secs(summary[name]),
    bounds ? el("small", {class: "bound", title: "the true value lies in this histogram bucket"}, secsRange(bounds)) : null);
}

function bytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// A time: the clock alone today, with the date when older (or later) than that.
function clock(t) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  const now = new Date();
  if (Math.abs(now - d) < 86400e3 && d.toDateString() === now.toDateString()) {
    return d.toLocaleTimeString();
  }
  return `${d.toLocaleDateString(undefined, {year: "numeric", month: "short", day: "numeric"})} ${d.toLocaleTimeString()}`;
}

function ago(t, now) {
  if (!t) return "–";
  const s = (now || Date.now() / 1000) - t;
  return s >= 0 ? `${secs(s)} ago` : `in ${secs(-s)}`;
}
const json = (v) => JSON.stringify(v, null, 1);

// A task's payload or result as text: the value, or its preview when it was cut (valid JSON,
// pretty-printed like a value; an encrypted one too long to open in a preview has none).
function valueText(t, part, pretty) {
  const size = (t.truncated || {})[part];
  if (size === undefined) return pretty ? json(t[part]) : JSON.stringify(t[part]);
  const preview = t[`${part}_preview`];
  if (typeof preview !== "string") return `(encrypted, ${bytes(size)}: too long to open in a preview)`;
  if (!pretty) return preview;
  try { return json(JSON.parse(preview)); } catch (err) { return preview; }
}

// A long text shortened for a table cell (the full one shows above it, or on its page).
const clip = (text, n) => (text.length > n ? `${text.slice(0, n)}…` : text);

const valueUrl = (t, part) =>
  `/api/tasks/${encodeURIComponent(t.id)}/value/${part}?queue=${encodeURIComponent(t.queue)}`;

// "preview of 879 KiB · full value" under a value that was cut (null when it was not).
function cutNote(t, part) {
  const size = (t.truncated || {})[part];
  if (size === undefined) return null;
  return el("p", {class: "cut muted", data: {part}}, `a preview: ${bytes(size)} in all · `,
    el("a", {href: valueUrl(t, part), target: "_blank", rel: "noopener"}, "full value"));
}

function toast(text, bad) {
  const t = $("toast");
  t.textContent = text;
  t.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 4000);
}

function ask(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
  });
}

async function post(url, body) {
  const reply = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: JSON.stringify(body),
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new Error(data.error || `HTTP ${reply.status}`);
  return data;
}

// The last reply of a few URLs with its ETag: asked again with If-None-Match, an unchanged
// reply is a 304 without a body (an idle page downloads next to nothing).
const replies = new Map();

async function get(url) {
  const known = replies.get(url);
  const headers = known ? {"If-None-Match": known.etag} : {};
  const reply = await fetch(url, {credentials: "same-origin", headers});
  if (reply.status === 401) { window.location = "/login?expired=1"; throw new Error("logged out"); }
  if (reply.status === 304 && known) return known.data;
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw Object.assign(new Error(data.error || `HTTP ${reply.status}`), {status: reply.status});
  const etag = reply.headers.get("ETag");
  replies.delete(url);
  if (etag) {
    replies.set(url, {etag, data});
    if (replies.size > 20) replies.delete(replies.keys().next().value);
  }
  return data;
}

async function act(url, body, done) {
  try {
    const data = await post(url, body);
    toast(done(data));
  } catch (err) {
    toast(`Failed: ${err.message}`, true);
  }
  deadKey = null;
  refresh();
}

// -- charts: SVG polylines, a y axis, time labels and a hover tooltip -----------------------
// A chart is {svg, lines: {name: polyline}, width}; data is {start, step, series: {name: []}}.
function makeChart(id, lineIds, tipId, axisId, cursorId, format) {
  const svg = $(id);
  const chart = {svg, lines: lineIds, tip: $(tipId), axis: $(axisId), cursor: $(cursorId),
                 box: svg.parentElement, data: null, format, peak: 1};
  svg.addEventListener("mousemove", (ev) => hover(chart, ev));
  svg.addEventListener("mouseleave", () => { chart.tip.hidden = true; chart.cursor.style.display = "none"; });
  return chart;
}

function drawSeries(chart, data, scale) {
  chart.data = data;
  const n = data.length;
  const width = Math.max(n, 1);
  chart.svg.setAttribute("viewBox", `0 0 ${width} 100`);
  for (const g of chart.svg.querySelectorAll("line.grid")) g.setAttribute("x2", String(width));
  let peak = 0;
  for (const name of Object.keys(chart.lines)) {
    for (const v of data.series[name]) if (v !== null && v > peak) peak = v;
  }
  peak = peak > 0 ? peak : 1;
  chart.peak = peak;
  for (const [name, lineId] of Object.entries(chart.lines)) {
    const values = data.series[name];
    const line = $(lineId);
    const y = (v) => (100 - (v / peak) * 96).toFixed(2);
    if (line.tagName === "path") {   // a gap where nothing ran (null), not a fall to zero
      let d = "", open = false;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === null || v === undefined) { open = false; continue; }
        d += `${open ? "L" : "M"}${i},${y(v)} ${open ? "" : `L${i + 1},${y(v)} `}`;
        open = true;
      }
      line.setAttribute("d", d.trim());
      continue;
    }
    const out = [];
    for (let i = 0; i < n; i++) {
      const v = values[i] === null || values[i] === undefined ? 0 : values[i];
      out.push(`${i},${y(v)}`);
    }
    line.setAttribute("points", out.join(" "));
  }
  const y = chart.box.querySelector(".yaxis");
  y.querySelector(".ymax").textContent = scale(peak);
  y.querySelector(".ymid").textContent = scale(peak / 2);
  // time labels: five, from the first bucket to the last
  chart.axis.replaceChildren();
  for (let k = 0; k <= 4; k++) {
    const i = Math.round((n - 1) * k / 4);
    const t = data.start + i * data.step;
    chart.axis.append(el("span", {}, n ? timeLabel(t, data.step) : ""));
  }
}

function timeLabel(t, step) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], step >= 60 ? {hour: "2-digit", minute: "2-digit"} : {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

function hover(chart, ev) {
  const data = chart.data;
  if (!data || !data.length) return;
  const rect = chart.svg.getBoundingClientRect();
  const i = Math.min(data.length - 1, Math.max(0, Math.floor((ev.clientX - rect.left) / rect.width * data.length)));
  chart.cursor.setAttribute("x1", String(i + 0.5));
  chart.cursor.setAttribute("x2", String(i + 0.5));
  chart.cursor.style.display = "";
  const t = data.start + i * data.step;
  chart.tip.textContent = `${clock(t)} · ${chart.format(data, i)}`;
  chart.tip.hidden = false;
  const x = ev.clientX - chart.box.getBoundingClientRect().left;
  chart.tip.style.left = `${Math.min(Math.max(x - 80, 0), chart.box.clientWidth - 170)}px`;
}

// Throughput: per second over the last hour for all queues (incremental, from the overview
// poll); per minute for a day, or for one queue (its task types), from /api/series.
const points = new Map();   // second -> [processed, failed]
let lastSecond = null;      // the newest complete second we have
const view = {range: "hour", queue: ""};
let minuteSeries = null, minuteFetched = 0;

function addHistory(h) {
  for (let i = 0; i < h.processed.length; i++) {
    points.set(h.start + i * h.step, [h.processed[i], h.failed[i]]);
  }
  if (h.processed.length) lastSecond = h.start + (h.processed.length - 1) * h.step;
  if (lastSecond !== null) {
    for (const s of points.keys()) if (s <= lastSecond - HOUR) points.delete(s);
  }
}

let throughput = null, runtime = null;

function secondData(span) {
  const first = lastSecond - span + 1;
  const processed = [], failed = [];
  for (let s = first; s <= lastSecond; s++) {
    const v = points.get(s) || [0, 0];
    processed.push(v[0]);
    failed.push(v[1]);
  }
  return {start: first, step: 1, length: span, series: {processed, failed}};
}

const RANGES = {"15m": 900, hour: HOUR, day: 86400};

function drawCharts() {
  const span = RANGES[view.range];
  const perSecond = span <= HOUR && !view.queue;
  $("chart-unit").textContent = perSecond ? "second" : "minute";
  if (perSecond && lastSecond !== null) {
    drawSeries(throughput, secondData(span), num);
    $("chart-peak").textContent = num(throughput.peak);
  }
  if (minuteSeries) {
    const m = minuteSeries;
    const data = (s) => ({start: m.start, step: m.step, length: m.processed.length, series: s});
    if (!perSecond) {
      drawSeries(throughput, data({processed: m.processed, failed: m.failed}), num);
      $("chart-peak").textContent = num(throughput.peak);
    }
    drawSeries(runtime, data({p50: m.p50, p99: m.p99}), (v) => secs(v));
  }
}

async function refreshSeries(force) {
  if (!force && Date.now() - minuteFetched < 10000) return;
  minuteFetched = Date.now();
  const span = RANGES[view.range];   // per minute: 15, 60 or 1,440 points
  const q = view.queue ? `&queue=${encodeURIComponent(view.queue)}` : "";
  minuteSeries = await get(`/api/series?span=${span}${q}`);
  drawCharts();
}

// -- overview sections ---------------------------------------------------------------------
function drawCards(o) {
  const qs = Object.values(o.queues);
  const sum = (k) => qs.reduce((a, q) => a + q[k], 0);
  $("rate-processed").textContent = rate(o.rates.processed);
  $("rate-failed").textContent = rate(o.rates.failed);
  $("total-succeeded").textContent = num(o.stats.succeeded);
  $("total-ready").textContent = num(sum("ready"));
  $("total-running").textContent = num(sum("running"));
  $("total-scheduled").textContent = num(sum("scheduled"));
  $("total-dead").textContent = num(o.dead);
}

function priorityBar(byPriority) {
  const bar = el("div", {class: "prio"});
  for (let p = 9; p >= 0; p--) {
    const n = byPriority[p] || 0;
    if (n) bar.append(el("span", {title: `priority ${p}: ${n} ready`}, el("b", {}, `p${p}`), ` ${num(n)}`));
  }
  return bar;
}

const tasksLink = (state, queue, text) =>
  el("a", {href: `#/tasks?state=${state}&queue=${encodeURIComponent(queue)}`}, text);

let lastSizes = {};

// The tabs' counts come from the overview's queue sizes (recently finished: from its list).
function drawTabCounts() {
  const sizes = Object.entries(lastSizes).filter(([name]) => !list.queue || name === list.queue);
  for (const b of $("state-tabs").querySelectorAll("button")) {
    const state = b.dataset.state;
    if (state === "finished") continue;
    b.querySelector(".count").textContent = num(sizes.reduce((a, [, q]) => a + q[state], 0));
  }
}

function drawQueues(queues) {
  lastSizes = queues;
  drawTabCounts();
  const names = Object.keys(queues).sort((a, b) => a.localeCompare(b));
  for (const select of [$("chart-queue"), $("filter-queue")]) setOptions(select, names);
  const rows = names.map((name) => {
    const q = queues[name];
    const limits = Object.entries(q.limits || {}).map(([t, l]) =>
      `${t}: ${l.limits} (${l.running} running, ${l.held} held, set by ${l.set_by})`).join("\n");
    return el("tr", {data: {queue: name}, class: q.broken ? "broken" : (q.paused ? "paused" : "")},
      el("td", {}, tasksLink("ready", name, name), q.broken ? el("span", {class: "badge bad", title: `${q.broken.problem || "a key is corrupt"}: run tq queue repair ${name}`}, " BROKEN") : "",
        q.paused ? el("span", {class: "badge warn", title: "nothing is claimed until it is resumed"}, " PAUSED") : "",
        limits ? el("span", {class: "badge limits", title: limits}, " limited") : ""),
      el("td", {class: "num"}, tasksLink("ready", name, num(q.ready))),
      el("td", {}, priorityBar(q.by_priority)),
      el("td", {class: "num"}, tasksLink("scheduled", name, num(q.scheduled))),
      el("td", {class: "num"}, tasksLink("running", name, num(q.running))),
      el("td", {class: "num"}, tasksLink("dead", name, num(q.dead))),
      el("td", {}, q.paused
        ? el("button", {type: "button", class: "small resume", onclick: () => pauseQueue(name, false)}, "Resume")
        : el("button", {type: "button", class: "small pause", onclick: () => pauseQueue(name, true)}, "Pause"),
        " ", el("button", {type: "button", class: "danger small purge", onclick: () => purge(name, q)}, "Purge")));
  });
  fill($("queues").tBodies[0], rows, "no queue yet", 7);
}

function setOptions(select, names) {
  const have = [...select.options].slice(1).map((o) => o.value).join("\n");
  if (have === names.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(select.options[0], ...names.map((n) => el("option", {value: n}, n)));
  select.value = names.includes(chosen) ? chosen : "";
}

function drawLatency(latency, windowSeconds) {
  $("latency-window").textContent = String(Math.round(windowSeconds / 60));
  const rows = Object.entries(latency).map(([type, t]) => {
    const o = t.outcomes;
    return el("tr", {},
      el("td", {}, type), el("td", {class: "num"}, num(o.succeeded + o.failed)),
      el("td", {class: "num"}, num(o.succeeded)), el("td", {class: "num"}, num(o.failed)),
      el("td", {class: "num"}, num(o.retried)), el("td", {class: "num"}, num(o.dead)),
      ...["p50", "p90", "p99"].map((p) => percentileCell(t.duration, p)),
      ...["p50", "p90", "p99"].map((p) => percentileCell(t.wait, p)));
  });
  fill($("latency").tBodies[0], rows, "nothing finished in this window", 12);
}

function drawMasters(masters) {
  const box = $("masters");
  box.replaceChildren();
  if (!masters.length) box.append(el("p", {class: "muted"}, "no master is registered"));
  for (const m of masters) {
    const children = m.children || [];
    const busy = children.filter((c) => c.state === "busy").length;
    const head = el("div", {class: "master-head"},
      el("b", {}, `${m.host || "?"}`), ` pid ${m.pid ?? "?"} · `,
      el("span", {class: `state ${m.status || ""}`}, m.status || "?"),
      ` · ${busy}/${children.length} busy · processed ${num(m.processed)} · failed ${num(m.failed)}`,
      ` · queues ${(m.queues || []).join(", ")} · heartbeat ${secs(m.age)} ago`,
      m.stale ? el("span", {class: "badge bad"}, "stale") : null);
    const rows = children.map((c) => el("tr", {},
      el("td", {class: "num"}, c.index ?? ""), el("td", {class: "num"}, c.pid ?? ""),
      el("td", {}, el("span", {class: `state ${c.state || ""}`}, c.state || "?")),
      el("td", {}, c.task ? `${c.type || "?"} ` : "", c.task ? el("a", {href: `#/task/${encodeURIComponent(c.task)}`}, el("code", {}, c.task)) : "–"),
      el("td", {class: "num"}, secs(c.task_age)),
      el("td", {class: "num"}, bytes(c.rss)), el("td", {class: "num"}, bytes(c.uss)),
      el("td", {class: "num"}, typeof c.cpu === "number" ? `${c.cpu.toFixed(0)} %` : "–"),
      el("td", {class: "num"}, num(c.processed))));
    const table = el("table", {class: "children"},
      el("thead", {}, el("tr", {}, ...["#", "pid", "state", "task", "running for", "RSS", "USS", "CPU", "processed"]
        .map((h, i) => el("th", {class: i === 2 || i === 3 ? "" : "num"}, h)))),
      el("tbody"));
    fill(table.tBodies[0], rows, "no children", 9);
    box.append(el("div", {class: "master", data: {master: m.id}}, head, el("div", {class: "scroll"}, table)));
  }
}

const taskLink = (id) => el("a", {href: `#/task/${encodeURIComponent(id)}`}, el("code", {}, id));

function drawScheduled(items, now) {
  const rows = items.map((t) => el("tr", {},
    el("td", {}, t.eta <= now ? "due" : `in ${secs(t.eta - now)}`),
    el("td", {}, taskLink(t.id)), el("td", {}, t.queue), el("td", {}, t.type),
    el("td", {class: "num"}, num(t.failures)), el("td", {class: "num"}, t.priority)));
  fill($("scheduled").tBodies[0], rows, "nothing scheduled", 6);
}

function drawPeriodic(items, now) {
  const at = (t) => t === null || t === undefined ? "–" : (t <= now ? `${secs(now - t)} ago` : `in ${secs(t - now)}`);
  const rows = (items || []).map((p) => el("tr", {},
    el("td", {}, p.name), el("td", {}, el("code", {}, p.schedule)), el("td", {}, p.type),
    el("td", {}, p.tz), el("td", {}, at(p.last)), el("td", {}, at(p.next))));
  fill($("periodic").tBodies[0], rows, "no periodic task", 6);
}

// -- dead letters on the overview ----------------------------------------------------------
let deadKey = null;     // ids shown now: the list is rebuilt only when they change
let deadFetched = 0;

async function refreshDead(count) {
  const stale = Date.now() - deadFetched > DEAD_REFRESH_MS;
  if (deadKey !== null && !stale && count === drawDead.count) return;
  deadFetched = Date.now();
  const items = await get("/api/failed?limit=50");
  const key = items.map((t) => t.id).join(",");
  drawDead.count = count;
  if (key === deadKey) return;
  deadKey = key;
  drawDead(items);
}

function drawDead(items) {
  const box = $("dead");
  const open = new Set([...box.querySelectorAll("details[open]")].map((d) => d.dataset.id));
  box.replaceChildren();
  if (!items.length) box.append(el("p", {class: "muted"}, "none"));
  for (const t of items) {
    const tb = el("details", {data: {id: t.id}}, el("summary", {}, "traceback"),
      el("pre", {class: "traceback"}, t.traceback || "(no traceback)"), cutNote(t, "traceback"));
    if (open.has(t.id)) tb.open = true;
    box.append(el("article", {class: "dead-item", data: {id: t.id, queue: t.queue}},
      el("div", {class: "dead-head"},
        taskLink(t.id), ` ${t.queue} · ${t.type} · ${num(t.attempts)} attempt(s) · died ${clock(t.finished_at || t.failed_at)} `,
        el("span", {class: "badge bad"}, t.error_kind || "error"),
        el("span", {class: "spacer"}),
        el("button", {type: "button", class: "small retry", onclick: () => retry([t])}, "Retry"),
        el("button", {type: "button", class: "small danger delete", onclick: () => remove([t])}, "Delete")),
      el("pre", {class: "error"}, t.error || "(no message)"), cutNote(t, "error"),
      el("pre", {class: "payload"}, t.encrypted ? "encrypted" : valueText(t, "payload", true)),
      cutNote(t, "payload"), tb));
  }
  if (items.length < Math.min(50, drawDead.count || 0)) {   // a page is bounded in bytes too
    box.append(el("p", {class: "muted"}, `the newest ${items.length} (long tasks): `,
      el("a", {href: "#/tasks?state=dead"}, "every dead task")));
  }
}

function retry(tasks) {
  act("/api/failed/retry", {ids: tasks.map((t) => t.id), queue: tasks[0].queue},
    (d) => `Retried ${d.retried} task(s)`);
}

async function remove(tasks) {
  if (!(await ask(`Delete dead task ${tasks[0].id} for good?`))) return;
  act("/api/failed/delete", {ids: tasks.map((t) => t.id), queue: tasks[0].queue},
    (d) => `Deleted ${d.deleted} task(s)`);
}

function runNow(t) {
  act("/api/scheduled/run", {ids: [t.id], queue: t.queue}, (d) => `Made ${d.ran} task(s) ready to run now`);
}

async function unschedule(t) {
  if (!(await ask(`Delete scheduled task ${t.id} before it runs?`))) return;
  act("/api/scheduled/delete", {ids: [t.id], queue: t.queue}, (d) => `Deleted ${d.deleted} task(s)`);
}

async function purge(name, q) {
  const n = q.ready + q.scheduled;
  if (!(await ask(`Purge queue “${name}”? Its ${num(n)} waiting task(s) (ready and scheduled) are deleted for good. Running and dead tasks stay.`))) return;
  act(`/api/queues/${encodeURIComponent(name)}/purge`, {confirm: name}, (d) => `Purged ${d.purged} task(s) from ${name}`);
}

// -- the tasks view: one state, filters, pages ----------------------------------------------
async function pauseQueue(name, pause) {
  if (pause && !(await ask(`Pause queue “${name}”? Nothing more starts from it (on every host) until it is resumed; enqueues go on and running tasks finish.`))) return;
  act(`/api/queues/${encodeURIComponent(name)}/${pause ? "pause" : "resume"}`, {},
      () => `${pause ? "Paused" : "Resumed"} ${name}`);
}

// cursors and firsts: each page's cursor and the number of its first item (pages are bounded
// in bytes as well as in count, so a page may hold fewer than 50)
const list = {state: "dead", queue: "", type: "", text: "", cursors: [""], firsts: [1], page: 0, key: null};

function listQuery(extra) {
  const p = new URLSearchParams({state: list.state});
  for (const k of ["queue", "type", "text"]) if (list[k]) p.set(k, list[k]);
  for (const [k, v] of Object.entries(extra || {})) if (v) p.set(k, v);
  return p.toString();
}

function openTasks(params) {
  const state = params.get("state") || "dead";
  const next = {state, queue: params.get("queue") || "", type: params.get("type") || "", text: params.get("text") || ""};
  const key = JSON.stringify(next);
  if (key !== list.key) Object.assign(list, next, {cursors: [""], firsts: [1], page: 0, key});
  for (const b of $("state-tabs").querySelectorAll("button")) {
    b.setAttribute("aria-selected", String(b.dataset.state === state));
  }
  $("filter-queue").value = list.queue;
  if (list.queue && $("filter-queue").value !== list.queue) {   // not listed yet: add it
    $("filter-queue").append(el("option", {value: list.queue}, list.queue));
    $("filter-queue").value = list.queue;
  }
  $("filter-type").value = list.type;
  $("filter-text").value = list.text;
  $("when-head").textContent = {scheduled: "due", ready: "enqueued", running: "started",
    dead: "died", finished: "finished"}[state];
  for (const b of $("bulk").querySelectorAll("button")) b.hidden = !b.dataset.for.split(" ").includes(state);
  $("bulk-label").textContent = ["dead", "scheduled"].includes(state) ? "For everything the filter matches:" : "";
  loadPage();
}

function go(params) {
  window.location.hash = `#/tasks?${params}`;
}

async function loadPage() {
  const cursor = list.cursors[list.page];
  try {
    const page = await get(`/api/tasks?${listQuery({cursor, limit: "50"})}`);
    drawList(page);
  } catch (err) {
    if (err.message !== "logged out") toast(`Failed: ${err.message}`, true);
  }
}

function drawList(page) {
  const now = Date.now() / 1000;
  const rows = page.items.map((t) => {
    const when = {scheduled: () => (t.eta <= now ? "due" : `in ${secs(t.eta - now)}`),
      ready: () => clock(t.created_at), running: () => `${clock(t.started_at)} (${ago(t.started_at, now)})`,
      dead: () => clock(t.finished_at || t.failed_at), finished: () => clock(t.finished_at)}[page.state]();
    const actions = el("td", {class: "actions"});
    if (page.state === "dead") {
      actions.append(el("button", {type: "button", class: "small retry", onclick: () => retry([t])}, "Retry"),
        el("button", {type: "button", class: "small danger delete", onclick: () => remove([t])}, "Delete"));
    } else if (page.state === "scheduled") {
      actions.append(el("button", {type: "button", class: "small run-now", onclick: () => runNow(t)}, "Run now"),
        el("button", {type: "button", class: "small danger delete", onclick: () => unschedule(t)}, "Delete"));
    }
    const cut = t.truncated || {};
    const part = (t.payload === null || t.payload === undefined) && cut.payload === undefined ? "result" : "payload";
    const detail = t.error ? el("span", {class: "error-text"}, t.error)
      : el("code", {class: "payload"}, t.encrypted ? "encrypted" : part === "result" && t.extra && t.extra.result === "not kept" ? "(result not kept)" : valueText(t, part, false));
    const size = cut[t.error ? "error" : part];
    return el("tr", {data: {id: t.id, queue: t.queue}},
      el("td", {}, taskLink(t.id)), el("td", {}, t.queue), el("td", {}, t.type),
      el("td", {class: "num"}, num(t.attempts)), el("td", {}, when),
      el("td", {class: "detail"}, detail, size === undefined ? null : el("small", {class: "cut muted"}, ` ${bytes(size)}`)), actions);
  });
  const empty = page.total === null && page.next ? `no match among ${num(page.scanned)} tasks searched: look further with Next` : "nothing here";
  fill($("task-list").tBodies[0], rows, empty, 7);
  for (const b of $("state-tabs").querySelectorAll("button")) {
    if (b.dataset.state === page.state) {
      b.querySelector(".count").textContent = num(Object.values(page.counts).reduce((a, n) => a + n, 0));
    }
  }
  drawTabCounts();
  list.cursors[list.page + 1] = page.next;
  const first = list.firsts[list.page] || 1;
  list.firsts[list.page + 1] = first + page.items.length;
  $("page-prev").disabled = list.page === 0;
  $("page-next").disabled = !page.next;
  const info = page.total === null
    ? `page ${list.page + 1} · ${num(page.items.length)} match(es) · ${num(page.scanned)} searched`
    : page.items.length ? `${num(first)}–${num(first + page.items.length - 1)} of ${num(page.total)}` : `0 of ${num(page.total)}`;
  $("page-info").textContent = page.cut_short ? `${info} (a shorter page: long tasks)` : info;
}

async function bulk(action) {
  const what = list.type || list.text || list.queue ? "every task matching the filter" : `every ${list.state} task`;
  const verb = {retry: "Retry", run: "Run now", delete: "Delete for good"}[action];
  if (!(await ask(`${verb}: ${what} (${list.state}${list.queue ? ` in ${list.queue}` : ""})?`))) return;
  const body = {state: list.state, action, queue: list.queue || null, type: list.type || null, text: list.text || null};
  try {
    const d = await post("/api/tasks/bulk", body);
    toast(`${verb}: ${d.done} task(s)`);
  } catch (err) {
    toast(`Failed: ${err.message}`, true);
  }
  list.cursors = [""];
  list.firsts = [1];
  list.page = 0;
  refresh();
}

// -- one task --------------------------------------------------------------------------------
async function openTask(id) {
  $("task-id").textContent = id;
  $("task-missing").hidden = true;
  try {
    drawTask(await get(`/api/tasks/${encodeURIComponent(id)}`));
  } catch (err) {
    if (err.message === "logged out") return;
    $("task-body").hidden = true;
    $("task-state").textContent = "";
    $("task-actions").replaceChildren();
    $("task-missing").textContent = err.status === 404 ? `No task with id ${id}: never enqueued, or finished and its result expired.` : `Failed: ${err.message}`;
    $("task-missing").hidden = false;
  }
}

function drawTask(t) {
  $("task-body").hidden = false;
  $("task-state").textContent = t.state;
  $("task-state").className = `badge state-${t.state}`;
  const fields = [["queue", t.queue], ["type", t.type], ["state", t.state], ["priority", t.priority],
    ["attempts", `${num(t.attempts)}${t.max_retries !== null && t.max_retries !== undefined ? ` (retries allowed: ${t.max_retries})` : ""}`],
    ["timeout", t.timeout ? secs(t.timeout) : null], ["created", clock(t.created_at)],
    ["due", t.eta ? `${clock(t.eta)} (${ago(t.eta)})` : null], ["started", t.started_at ? clock(t.started_at) : null],
    ["finished", t.finished_at ? clock(t.finished_at) : null], ["last failure", t.failed_at ? clock(t.failed_at) : null],
    ["run time", t.started_at && t.finished_at && t.state === "succeeded" ? secs(t.finished_at - t.started_at) : null],
    ["worker", t.worker], ["workflow", t.workflow],
    ["progress", t.progress ? `${Math.round(t.progress.fraction * 100)}% ${t.progress.message || ""}`.trim() : null]];
  const dl = $("task-fields");
  dl.replaceChildren();
  for (const [k, v] of fields) {
    if (v === null || v === undefined || v === "–") continue;
    const dd = k === "workflow" ? el("dd", {}, el("a", {href: `#/workflow/${encodeURIComponent(v)}`}, v))
      : el("dd", {}, String(v));
    dl.append(el("dt", {}, k), dd);
  }
  const cut = t.truncated || {};
  $("task-payload").textContent = t.encrypted && t.payload === null ? "encrypted (start the dashboard with the keys to read it)"
    : t.payload === null && cut.payload === undefined ? "(not kept once a task is finished)" : valueText(t, "payload", true);
  $("task-result-box").hidden = t.state !== "succeeded";
  $("task-result").textContent = t.encrypted && t.result === null && cut.result === undefined
    ? "encrypted (start the dashboard with the keys to read it)" : valueText(t, "result", true);
  $("task-error-box").hidden = !t.error;
  $("task-error").textContent = t.error ? `${t.error_kind ? `[${t.error_kind}] ` : ""}${t.error}` : "";
  $("task-traceback").textContent = t.traceback || "(no traceback)";
  for (const part of ["payload", "result", "error", "traceback"]) {
    const note = cutNote(t, part);
    $(`task-${part}-cut`).replaceChildren(...(note ? [...note.childNodes] : []));
    $(`task-${part}-cut`).hidden = !note;
  }
  const rows = (t.history || []).map((h, i) => el("tr", {},
    el("td", {class: "num"}, i + 1), el("td", {}, clock(h.at)), el("td", {}, `failed (${h.kind || "error"})`),
    el("td", {}, h.worker || "–"), el("td", {class: "message"}, clip(h.message || "", 300))));
  const last = (t.history || []).length + 1;
  if (t.error) {
    rows.push(el("tr", {}, el("td", {class: "num"}, last), el("td", {}, clock(t.failed_at)),
      el("td", {}, `${t.state === "dead" ? "dead" : "failed"} (${t.error_kind || "error"})`), el("td", {}, t.worker || "–"), el("td", {class: "message"}, clip(t.error, 300))));
  }
  if (t.state === "running" || t.state === "succeeded") {
    rows.push(el("tr", {}, el("td", {class: "num"}, num(t.attempts)), el("td", {}, clock(t.started_at)),
      el("td", {}, t.state), el("td", {}, t.worker || "–"), el("td", {}, t.state === "succeeded" ? `took ${secs(t.finished_at - t.started_at)}` : "")));
  }
  fill($("task-history").tBodies[0], rows, "not run yet", 5);
  const box = $("task-actions");
  box.replaceChildren();
  if (t.state === "dead") {
    box.append(el("button", {type: "button", class: "retry", onclick: () => retry([t])}, "Retry"),
      el("button", {type: "button", class: "danger delete", onclick: () => remove([t])}, "Delete"));
  } else if (t.state === "scheduled" || t.state === "failed-will-retry") {
    box.append(el("button", {type: "button", class: "run-now", onclick: () => runNow(t)}, "Run now"),
      el("button", {type: "button", class: "cancel", onclick: () => cancelTask(t)}, "Cancel"),
      el("button", {type: "button", class: "danger delete", onclick: () => unschedule(t)}, "Delete"));
  } else if (t.state === "queued" || t.state === "waiting" || t.state === "running") {
    box.append(el("button", {type: "button", class: "cancel", onclick: () => cancelTask(t)}, "Cancel"));
  }
}

async function cancelTask(t) {
  const what = t.state === "running" ? "Its handler is interrupted (its worker is killed if it does not stop)."
    : "It leaves its queue and never runs.";
  if (!(await ask(`Cancel task ${t.id}? ${what}`))) return;
  act(`/api/tasks/${encodeURIComponent(t.id)}/cancel`, {queue: t.queue},
      (d) => d.outcome === "cancelled" ? `Cancelled ${t.id}`
        : d.outcome === "cancelling" ? `Cancelling ${t.id}: its worker is interrupting it` : `Not cancelled: it is ${d.outcome}`);
}

// -- one workflow ----------------------------------------------------------------------------
async function openWorkflow(id) {
  $("workflow-id").textContent = id;
  $("workflow-missing").hidden = true;
  try {
    drawWorkflow(await get(`/api/workflows/${encodeURIComponent(id)}`));
  } catch (err) {
    if (err.message === "logged out") return;
    $("workflow-body").hidden = true;
    $("workflow-state").textContent = "";
    $("workflow-actions").replaceChildren();
    $("workflow-missing").textContent = err.status === 404 ? `No workflow with id ${id}: unknown, or its record expired.` : `Failed: ${err.message}`;
    $("workflow-missing").hidden = false;
  }
}

function drawWorkflow(w) {
  $("workflow-body").hidden = false;
  $("workflow-state").textContent = w.state;
  $("workflow-state").className = `badge state-${w.state}`;
  const counts = Object.entries(w.counts).map(([k, v]) => `${num(v)} ${k}`).join(", ");
  const dl = $("workflow-fields");
  dl.replaceChildren();
  for (const [k, v] of [["state", w.state], ["policy", w.policy], ["created", clock(w.created_at)], ["members", counts]]) {
    dl.append(el("dt", {}, k), el("dd", {}, String(v)));
  }
  const rows = w.members.map((m) => el("tr", {class: `state-${m.state}`},
    el("td", {}, el("a", {href: `#/task/${encodeURIComponent(m.id)}`}, m.name)), el("td", {}, m.type),
    el("td", {}, m.queue), el("td", {}, m.progress && m.state === "running" ? `running ${Math.round(m.progress.fraction * 100)}%` : m.state),
    el("td", {}, m.after.join(", ") || "–"),
    el("td", {}, m.state === "succeeded" ? valueText(m, "result", true) : (m.error ? `${m.error_kind ? `[${m.error_kind}] ` : ""}${m.error}` : ""))));
  if (w.members_total > w.members.length) {   // the reply is bounded in bytes
    rows.push(el("tr", {}, el("td", {colspan: 6, class: "muted"},
      `the first ${num(w.members.length)} of ${num(w.members_total)} members (the counts above cover them all)`)));
  }
  fill($("workflow-members").tBodies[0], rows, "no members", 6);
  const box = $("workflow-actions");
  box.replaceChildren();
  if (w.state === "running") {
    box.append(el("button", {type: "button", class: "cancel", onclick: () => cancelWorkflow(w)}, "Cancel workflow"));
  }
}

async function cancelWorkflow(w) {
  if (!(await ask(`Cancel workflow ${w.id}? Members not started never run; running ones are interrupted.`))) return;
  act(`/api/workflows/${encodeURIComponent(w.id)}/cancel`, {},
      (d) => `Workflow ${w.id}: ${d.cancelled || 0} cancelled, ${d.cancelling || 0} interrupted`);
}

// -- routing and the loop ------------------------------------------------------------------
let route = {name: "overview"};

function parseRoute() {
  const hash = window.location.hash.replace(/^#\/?/, "");
  if (hash.startsWith("task/")) return {name: "task", id: decodeURIComponent(hash.slice(5))};
  if (hash.startsWith("workflow/")) return {name: "workflow", id: decodeURIComponent(hash.slice(9))};
  if (hash.startsWith("tasks")) return {name: "tasks", params: new URLSearchParams(hash.split("?")[1] || "")};
  return {name: "overview"};
}

function show() {
  route = parseRoute();
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${route.name}`;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("on", a.dataset.view === (route.name === "task" || route.name === "workflow" ? "tasks" : route.name));
  }
  if (route.name === "tasks") openTasks(route.params);
  if (route.name === "task") openTask(route.id);
  if (route.name === "workflow") openWorkflow(route.id);
  refresh();
}

function refresh() {
  if (route.name === "overview") poll();
  else if (route.name === "tasks") loadPage();
  else if (route.name === "task") openTask(route.id);
  else if (route.name === "workflow") openWorkflow(route.id);
}

let timer = null;
let inFlight = false;
let again = false;   // an action asked for a refresh while a poll was running

async function poll() {
  if (inFlight) { again = true; return; }
  inFlight = true;
  clearTimeout(timer);
  const status = $("status");
  try {
    const since = lastSecond === null ? "" : String(lastSecond);
    const o = await get(`/api/overview?since=${since}`);
    addHistory(o.history);
    drawCards(o);
    drawQueues(o.queues);
    if (route.name === "overview") {
      await refreshSeries(false);
      drawCharts();
      drawLatency(o.latency, o.latency_window);
      drawMasters(o.masters);
      drawScheduled(o.scheduled, o.now);
      drawPeriodic(o.periodic, o.now);
      await refreshDead(o.dead);
    }
    status.textContent = `live · ${new Date().toLocaleTimeString()}`;
    status.className = "status ok";
  } catch (err) {
    status.textContent = `not updating: ${err.message}`;
    status.className = "status bad";
  } finally {
    inFlight = false;
    timer = setTimeout(poll, again ? 0 : POLL_MS);
    again = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  throughput = makeChart("chart", {processed: "line-processed", failed: "line-failed"}, "chart-tip", "chart-axis", "chart-cursor",
    (d, i) => `${num(d.series.processed[i])} processed · ${num(d.series.failed[i])} failed`);
  runtime = makeChart("latency-chart", {p50: "line-p50", p99: "line-p99"}, "latency-tip", "latency-axis", "latency-cursor",
    (d, i) => ["p50", "p99"].map((p) => {
      const bounds = minuteSeries && minuteSeries[`${p}_bounds`] ? minuteSeries[`${p}_bounds`][i] : null;
      return `${p} ${secs(d.series[p][i])}${bounds ? ` (${secsRange(bounds)})` : ""}`;
    }).join(" · "));
  const rangeButtons = [["range-15m", "15m"], ["range-hour", "hour"], ["range-day", "day"]];
  for (const [id, range] of rangeButtons) {
    $(id).addEventListener("click", () => {
      view.range = range;
      for (const [b] of rangeButtons) {
        $(b).classList.toggle("on", b === id);
        $(b).setAttribute("aria-pressed", String(b === id));
      }
      refreshSeries(true);
    });
  }
  $("chart-queue").addEventListener("change", () => { view.queue = $("chart-queue").value; refreshSeries(true); });
  $("retry-all").addEventListener("click", async () => {
    if (await ask("Retry every dead task? They go back to their queues with attempts reset.")) {
      act("/api/failed/retry", {all: true}, (d) => `Retried ${d.retried} task(s)`);
    }
  });
  $("delete-all").addEventListener("click", async () => {
    if (await ask("Delete every dead task for good?")) {
      act("/api/failed/delete", {all: true}, (d) => `Deleted ${d.deleted} task(s)`);
    }
  });
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("search-id").value.trim();
    if (id) window.location.hash = `#/task/${encodeURIComponent(id)}`;
  });
  for (const b of $("state-tabs").querySelectorAll("button")) {
    b.addEventListener("click", () => { list.state = b.dataset.state; go(listQuery()); });
  }
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    list.queue = $("filter-queue").value;
    list.type = $("filter-type").value.trim();
    list.text = $("filter-text").value.trim();
    go(listQuery());
  });
  $("filter-queue").addEventListener("change", () => $("filters").requestSubmit());
  $("filter-clear").addEventListener("click", () => go(new URLSearchParams({state: list.state}).toString()));
  $("page-next").addEventListener("click", () => { if (list.cursors[list.page + 1]) { list.page += 1; loadPage(); } });
  $("page-prev").addEventListener("click", () => { if (list.page > 0) { list.page -= 1; loadPage(); } });
  for (const b of $("bulk").querySelectorAll("button")) b.addEventListener("click", () => bulk(b.dataset.action));
  window.addEventListener("hashchange", show);
  show();
});
