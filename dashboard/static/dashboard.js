// tq dashboard: polls /api/overview every second and redraws. No framework, no build step.
// Everything that comes from a task (payload, error, traceback, names) is inserted with
// textContent or as an attribute value, never parsed as HTML.
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

function bytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
const json = (v) => JSON.stringify(v, null, 1);

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

async function act(url, body, done) {
  try {
    const data = await post(url, body);
    toast(done(data));
  } catch (err) {
    toast(`Failed: ${err.message}`, true);
  }
  deadKey = null;
  poll();
}

// -- throughput chart (SVG polylines over the last hour) -------------------------------------
const points = new Map();   // second -> [processed, failed]
let lastSecond = null;      // the newest complete second we have

function addHistory(h) {
  for (let i = 0; i < h.processed.length; i++) {
    points.set(h.start + i * h.step, [h.processed[i], h.failed[i]]);
  }
  if (h.processed.length) lastSecond = h.start + (h.processed.length - 1) * h.step;
  if (lastSecond !== null) {
    for (const s of points.keys()) if (s <= lastSecond - HOUR) points.delete(s);
  }
}

function drawChart() {
  if (lastSecond === null) return;
  const first = lastSecond - HOUR + 1;
  let peak = 1;
  for (const [p] of points.values()) peak = Math.max(peak, p);
  const line = (k) => {
    const out = [];
    for (let s = first; s <= lastSecond; s++) {
      const v = (points.get(s) || [0, 0])[k];
      out.push(`${s - first},${(100 - (v / peak) * 96).toFixed(2)}`);
    }
    return out.join(" ");
  };
  $("line-processed").setAttribute("points", line(0));
  $("line-failed").setAttribute("points", line(1));
  $("chart-peak").textContent = num(peak);
}

// -- sections ------------------------------------------------------------------------------
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

function drawQueues(queues) {
  const rows = Object.entries(queues).sort(([a], [b]) => a.localeCompare(b)).map(([name, q]) =>
    el("tr", {data: {queue: name}, class: q.broken ? "broken" : ""},
      el("td", {}, name, q.broken ? el("span", {class: "badge bad", title: `${q.broken.problem || "a key is corrupt"}: run tq queue repair ${name}`}, " BROKEN") : ""),
      el("td", {class: "num"}, num(q.ready)),
      el("td", {}, priorityBar(q.by_priority)),
      el("td", {class: "num"}, num(q.scheduled)),
      el("td", {class: "num"}, num(q.running)),
      el("td", {class: "num"}, num(q.dead)),
      el("td", {}, el("button", {type: "button", class: "danger small purge", onclick: () => purge(name, q)}, "Purge"))));
  fill($("queues").tBodies[0], rows, "no queue yet", 7);
}

function drawLatency(latency, windowSeconds) {
  $("latency-window").textContent = String(Math.round(windowSeconds / 60));
  const rows = Object.entries(latency).map(([type, t]) => {
    const o = t.outcomes;
    return el("tr", {},
      el("td", {}, type), el("td", {class: "num"}, num(o.succeeded + o.failed)),
      el("td", {class: "num"}, num(o.succeeded)), el("td", {class: "num"}, num(o.failed)),
      el("td", {class: "num"}, num(o.retried)), el("td", {class: "num"}, num(o.dead)),
      ...["p50", "p90", "p99"].map((p) => el("td", {class: "num"}, secs(t.duration[p]))),
      ...["p50", "p90", "p99"].map((p) => el("td", {class: "num"}, secs(t.wait[p]))));
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
      el("td", {}, c.task ? `${c.type || "?"} ` : "", c.task ? el("code", {}, c.task) : "–"),
      el("td", {class: "num"}, secs(c.task_age)),
      el("td", {class: "num"}, bytes(c.rss)), el("td", {class: "num"}, bytes(c.uss)),
      el("td", {class: "num"}, typeof c.cpu === "number" ? `${c.cpu.toFixed(0)} %` : "–"),
      el("td", {class: "num"}, num(c.processed))));
    const table = el("table", {class: "children"},
      el("thead", {}, el("tr", {}, ...["#", "pid", "state", "task", "running for", "RSS", "USS", "CPU", "processed"]
        .map((h, i) => el("th", {class: i === 2 || i === 3 ? "" : "num"}, h)))),
      el("tbody"));
    fill(table.tBodies[0], rows, "no children", 9);
    box.append(el("div", {class: "master", data: {master: m.id}}, head, table));
  }
}

function drawScheduled(items, now) {
  const rows = items.map((t) => el("tr", {},
    el("td", {}, t.eta <= now ? "due" : `in ${secs(t.eta - now)}`),
    el("td", {}, el("code", {}, t.id)), el("td", {}, t.queue), el("td", {}, t.type),
    el("td", {class: "num"}, num(t.failures)),
    el("td", {}, el("code", {class: "payload"}, JSON.stringify(t.payload)))));
  fill($("scheduled").tBodies[0], rows, "nothing scheduled", 6);
}

// -- dead letters --------------------------------------------------------------------------
let deadKey = null;     // ids shown now: the list is rebuilt only when they change
let deadFetched = 0;

async function refreshDead(count) {
  const stale = Date.now() - deadFetched > DEAD_REFRESH_MS;
  if (deadKey !== null && !stale && count === drawDead.count) return;
  deadFetched = Date.now();
  const reply = await fetch("/api/failed?limit=50", {credentials: "same-origin"});
  if (!reply.ok) return;
  const items = await reply.json();
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
      el("pre", {class: "traceback"}, t.traceback || "(no traceback)"));
    if (open.has(t.id)) tb.open = true;
    box.append(el("article", {class: "dead-item", data: {id: t.id, queue: t.queue}},
      el("div", {class: "dead-head"},
        el("code", {}, t.id), ` ${t.queue} · ${t.type} · ${num(t.attempts)} attempt(s) · died ${clock(t.finished_at || t.failed_at)} `,
        el("span", {class: "badge bad"}, t.error_kind || "error"),
        el("span", {class: "spacer"}),
        el("button", {type: "button", class: "small retry", onclick: () => retry([t])}, "Retry"),
        el("button", {type: "button", class: "small danger delete", onclick: () => remove([t])}, "Delete")),
      el("pre", {class: "error"}, t.error || "(no message)"),
      el("pre", {class: "payload"}, json(t.payload)),
      tb));
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

async function purge(name, q) {
  const n = q.ready + q.scheduled;
  if (!(await ask(`Purge queue “${name}”? Its ${num(n)} waiting task(s) (ready and scheduled) are deleted for good. Running and dead tasks stay.`))) return;
  act(`/api/queues/${encodeURIComponent(name)}/purge`, {confirm: name}, (d) => `Purged ${d.purged} task(s) from ${name}`);
}

// -- the loop ------------------------------------------------------------------------------
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
    const reply = await fetch(`/api/overview?since=${since}`, {credentials: "same-origin"});
    const o = await reply.json().catch(() => ({}));
    if (reply.status === 401) { window.location = "/login"; return; }
    if (!reply.ok) throw new Error(o.error || `HTTP ${reply.status}`);
    addHistory(o.history);
    drawChart();
    drawCards(o);
    drawQueues(o.queues);
    drawLatency(o.latency, o.latency_window);
    drawMasters(o.masters);
    drawScheduled(o.scheduled, o.now);
    await refreshDead(o.dead);
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
  poll();
});
