"""The status page: plain HTML and a little JavaScript that renders `status.json`, no build.

Every value from the store is set as text (`textContent`), never as HTML: keys and reasons
come from records a caller wrote.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>BatchBridge status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330;
         background: #fafbfc; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
  .meta { color: #5b6475; }
  .cards { display: flex; flex-wrap: wrap; gap: .6rem; margin-top: 1rem; }
  .card { background: #fff; border: 1px solid #d9dee7; border-radius: 6px; padding: .5rem .9rem;
          min-width: 9rem; }
  .card b { display: block; font-size: 1.5rem; }
  .card small { color: #5b6475; }
  table { border-collapse: collapse; background: #fff; min-width: 40rem; }
  th, td { border: 1px solid #d9dee7; padding: .25rem .55rem; text-align: left; }
  th { background: #eef1f6; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .none { color: #5b6475; font-style: italic; }
  .error { color: #a3261c; white-space: pre-wrap; }
  .failed { color: #a3261c; }
  code { font-size: 12px; }
</style>
</head>
<body data-loads="0">
<h1>BatchBridge status: <span id="bridge"></span></h1>
<div class="meta">Updated <span id="updated">never</span>, refreshing every
  <span id="every"></span> s. <span id="problem" class="error"></span></div>
<div class="cards">
  <div class="card"><small>Pending items</small><b id="pending-count">-</b>
    <small>oldest <span id="pending-oldest">-</span></small></div>
  <div class="card"><small>Batches in flight</small><b id="in-flight-count">-</b></div>
  <div class="card"><small>Being delivered</small><b id="delivering">-</b></div>
  <div class="card"><small>On the normal API</small><b id="falling-back">-</b>
    <small>past their max_wait</small></div>
  <div class="card"><small>Undeliverable</small><b id="undeliverable-count">-</b></div>
  <div class="card"><small>Dropped (caller gone)</small><b id="dropped-count">-</b></div>
  <div class="card"><small>Quarantined</small><b id="quarantined-count">-</b></div>
  <div class="card"><small>Ticks</small><b id="ticks">-</b>
    <small>next in <span id="next-tick">-</span></small></div>
</div>
<h2>Batches in flight</h2><div id="in-flight"></div>
<h2>Last finished batches</h2><div id="finished"></div>
<h2>Tokens, cost and savings per model</h2><div id="usage"></div>
<h2>Totals</h2><div id="totals"></div>
<h2>Undeliverable records (newest)</h2><div id="undeliverable"></div>
<h2>Dropped results (newest)</h2><div id="dropped"></div>
<h2>Quarantined records (newest)</h2><div id="quarantined"></div>
<h2>Refused callers</h2><div id="refused"></div>
<h2>Provider webhooks</h2><div id="webhooks"></div>
<h2>Last error</h2><div id="last-error"></div>
<script>
const params = new URLSearchParams(location.search);
const bridge = params.get("bridge") || "bridge";
const every = Math.max(1, Number(params.get("refresh")) || 5);
const base = location.pathname.replace(/\\/?$/, "/");
const $ = (id) => document.getElementById(id);

function ago(s) {
  if (s === null || s === undefined) return "-";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}
function text(value) {
  if (value === null || value === undefined || value === "") return "-";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
  return String(value);
}
function table(id, columns, rows, empty) {
  const place = $(id);
  place.replaceChildren();
  if (!rows.length) {
    const none = document.createElement("p");
    none.className = "none";
    none.textContent = empty;
    place.append(none);
    return;
  }
  const t = document.createElement("table");
  const head = t.insertRow();
  for (const [label] of columns) {
    const th = document.createElement("th");
    th.textContent = label;
    head.append(th);
  }
  for (const row of rows) {
    const tr = t.insertRow();
    if (row.batch_id) tr.dataset.batchId = row.batch_id;
    for (const [, field, show] of columns) {
      const td = tr.insertCell();
      const value = show ? show(row) : row[field];
      td.textContent = text(value);
      td.dataset.field = field;
      if (typeof value === "number") td.className = "num";
      if (field === "outcome" && value === "failed") td.className = "failed";
    }
  }
  place.append(t);
}
function render(s) {
  $("bridge").textContent = s.bridge;
  $("pending-count").textContent = s.pending.count;
  $("pending-oldest").textContent = ago(s.pending.oldest_age_s);
  $("in-flight-count").textContent = s.in_flight_count;
  $("delivering").textContent = s.delivering;
  $("falling-back").textContent = s.falling_back;
  $("undeliverable-count").textContent = s.undeliverable.count;
  $("dropped-count").textContent = s.dropped.count;
  $("quarantined-count").textContent = s.quarantined.count;
  $("ticks").textContent = s.ticks;
  $("next-tick").textContent = ago(s.next_tick_in_s);
  table("in-flight", [
    ["Batch", "batch_id"], ["Provider ids", "provider_ids"], ["Status", "status"],
    ["Done", "done"], ["Of", "total"], ["Age", "age_s", (r) => ago(r.age_s)],
    ["Next poll in", "next_poll_in_s", (r) => ago(r.next_poll_in_s)],
    ["Last error", "last_error"],
  ], s.in_flight, "No batch in flight.");
  table("finished", [
    ["Batch", "batch_id"], ["Provider ids", "provider_ids"], ["Outcome", "outcome"],
    ["Ok", "ok"], ["Failed", "failed"], ["Duration", "duration_s", (r) => ago(r.duration_s)],
    ["Finished", "finished_at", (r) => ago(s.generated_at - r.finished_at) + " ago"],
    ["Error", "error"],
  ], s.finished, "No batch finished yet.");
  const models = Object.entries(s.usage || {});
  const fields = [...new Set(models.flatMap(([, f]) => Object.keys(f)))];
  table("usage", [["Model", "model"], ...fields.map((f) => [f, f])],
    models.map(([model, f]) => ({model, ...f})), "no data");
  table("totals", [["Counter", "name"], ["Value", "value"]],
    Object.entries(s.totals).map(([name, value]) => ({name, value})), "no data");
  table("undeliverable", [["Record", "key"], ["Reason", "reason"],
    ["When", "at", (r) => ago(s.generated_at - r.at) + " ago"]],
    s.undeliverable.newest, "None.");
  table("dropped", [["Record", "key"], ["Reason", "reason"],
    ["When", "at", (r) => ago(s.generated_at - r.at) + " ago"]],
    s.dropped.newest, "None.");
  table("quarantined", [["Record", "key"], ["Namespace", "namespace"], ["Reason", "reason"],
    ["When", "at", (r) => (r.at ? ago(s.generated_at - r.at) + " ago" : "-")]],
    s.quarantined.newest, "None.");
  table("refused", [["Caller URL", "url", (r) => r.url || "this deployment"],
    ["Reason", "reason"], ["Items", "count"],
    ["Last", "last_at", (r) => ago(s.generated_at - r.last_at) + " ago"]],
    s.refused || [], "None.");
  const hooks = ["accepted", "ignored", "bad_signature", "replayed", "unknown_batch",
    "not_configured"];
  table("webhooks", [["Provider", "provider"], ...hooks.map((h) => [h, h])],
    Object.entries(s.webhooks || {}).map(([provider, c]) => ({provider, ...c})),
    "None received.");
  $("last-error").textContent = s.last_error || "None.";
  $("last-error").className = s.last_error ? "error" : "none";
}
async function load() {
  try {
    const url = base + "status.json?bridge=" + encodeURIComponent(bridge);
    const answer = await fetch(url, {credentials: "same-origin", cache: "no-store"});
    if (!answer.ok) throw new Error("status.json answered HTTP " + answer.status);
    render(await answer.json());
    $("updated").textContent = new Date().toLocaleTimeString();
    $("problem").textContent = "";
    document.body.dataset.loads = Number(document.body.dataset.loads) + 1;
  } catch (error) {
    $("problem").textContent = String(error);
  }
  setTimeout(load, every * 1000);
}
$("every").textContent = every;
load();
</script>
</body>
</html>
"""
