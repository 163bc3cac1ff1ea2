"""The operators' web dashboard: one self-contained page (no CDN, no build step, works offline).

It is a static shell with no data: it asks for a token once, keeps it in the tab's
sessionStorage, and reads everything through the API with it (GET /queues, GET /jobs, the
dead-letter routes), so it sees exactly what that token may see.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tarefa dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
*{box-sizing:border-box}body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:12px;align-items:center}
header h1{font-size:17px;margin:0 16px 0 0}header input{width:340px;padding:5px}
main{padding:16px 20px}.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px}
.card{background:#fff;border-radius:8px;padding:12px;border-top:4px solid #999}
.card b{display:block;font-size:28px}.card small{color:#667}
.PENDING{border-color:#1769aa}.PROCESSING{border-color:#f9a825}.COMPLETED{border-color:#2e7d32}
.FAILED{border-color:#c62828}.DEAD{border-color:#6a1b9a}
table{width:100%;border-collapse:collapse;background:#fff;margin-top:8px}th,td{padding:6px 8px;border-bottom:1px solid #e3e5ea;text-align:left}
th{background:#eceef2}.s{font-weight:600;padding:2px 6px;border-radius:4px;color:#fff}
.s.PENDING{background:#1769aa}.s.PROCESSING{background:#f9a825}.s.COMPLETED{background:#2e7d32}
.s.FAILED{background:#c62828}.s.CANCELLED{background:#757575}.s.RETRYING{background:#ef6c00}
h2{font-size:15px;margin:20px 0 4px}#error{color:#c62828;margin-left:auto}button{cursor:pointer}
.filters{display:flex;gap:8px;margin-top:8px}
</style></head><body>
<header><h1>Tarefa</h1>
<input id="token" type="password" placeholder="Bearer token (kept for this tab only)">
<button id="use-token">Use token</button>
<label><input id="auto" type="checkbox" checked> auto-refresh</label>
<span id="updated"></span><span id="error"></span></header>
<main>
<div class="cards">
 <div class="card PENDING"><small>Pending (incl. retrying)</small><b id="card-pending">-</b></div>
 <div class="card PROCESSING"><small>Processing</small><b id="card-processing">-</b></div>
 <div class="card COMPLETED"><small>Completed (kept jobs)</small><b id="card-completed">-</b></div>
 <div class="card FAILED"><small>Failed (kept jobs)</small><b id="card-failed">-</b></div>
 <div class="card DEAD"><small>Dead-lettered (in the DLQs)</small><b id="card-dead">-</b></div>
</div>
<h2>Last 1, 5 and 60 minutes</h2>
<table id="rates"><thead><tr><th>Window</th><th>Completed</th><th>Failed</th><th>Retried</th><th>Jobs/min</th><th>Avg processing</th><th>p95 processing</th><th>Avg queue wait</th><th>Error rate</th></tr></thead><tbody></tbody></table>
<h2>Queues</h2>
<table id="queues"><thead><tr><th>Queue</th><th>Waiting</th><th>In flight</th><th>Delayed</th><th>DLQ</th><th>Jobs/min (5 min)</th><th>p95 (5 min)</th><th>Errors (5 min)</th><th>State</th><th></th></tr></thead><tbody></tbody></table>
<h2>Recent jobs</h2>
<div class="filters"><select id="filter-status"><option value="">any status</option>
<option>PENDING</option><option>PROCESSING</option><option>RETRYING</option><option>COMPLETED</option><option>FAILED</option><option>CANCELLED</option></select>
<input id="filter-type" placeholder="type, e.g. system.echo"><button id="apply">Filter</button></div>
<table id="jobs"><thead><tr><th>Job</th><th>Type</th><th>Status</th><th>Priority</th><th>Attempts</th><th>Updated</th><th></th></tr></thead><tbody></tbody></table>
</main>
<script>
const $ = id => document.getElementById(id);
$('token').value = sessionStorage.getItem('tarefa-token') || '';
$('use-token').onclick = () => { sessionStorage.setItem('tarefa-token', $('token').value.trim()); refresh(); };
$('apply').onclick = () => refresh();
const base = location.pathname.replace(/dashboard$/, '');
async function api(method, path, body) {
  const headers = {'Content-Type': 'application/json'};
  const token = sessionStorage.getItem('tarefa-token'); if (token) headers['Authorization'] = 'Bearer ' + token;
  const r = await fetch(base + path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new Error((data && data.error && data.error.message) || (data && data.message) || ('HTTP ' + r.status));
  return data;
}
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) { td.innerHTML = ''; const s = document.createElement('span'); s.className = 's ' + cls; s.textContent = text; td.append(s); } return td; }
function ms(v) { return v === null ? '-' : v < 1000 ? v.toFixed(1) + ' ms' : (v / 1000).toFixed(2) + ' s'; }
function pct(v) { return v === null ? '-' : (v * 100).toFixed(1) + '%'; }
function button(td, label, action) { const b = document.createElement('button'); b.textContent = label; b.onclick = async () => { try { await action(); } catch (e) { $('error').textContent = e.message; } refresh(); }; td.append(b); return b; }
async function refresh() {
  $('error').textContent = '';
  try {
    const query = new URLSearchParams({limit: '100'});
    if ($('filter-status').value) query.set('status', $('filter-status').value);
    if ($('filter-type').value) query.set('type', $('filter-type').value.trim());
    const [queues, jobs] = await Promise.all([api('GET', 'queues'), api('GET', 'jobs?' + query)]);
    let dead = 0;
    const qBody = $('queues').tBodies[0]; qBody.innerHTML = '';
    for (const q of queues.queues) {
      dead += q.deadLetter;
      const row = qBody.insertRow(); row.dataset.priority = q.priority;
      const w = q.windows['5m'];
      cell(row, q.priority); cell(row, q.waiting); cell(row, q.inFlight); cell(row, q.delayed); cell(row, q.deadLetter);
      cell(row, w.processingRatePerMinute); cell(row, ms(w.p95ProcessingMs)); cell(row, pct(w.errorRate)); cell(row, q.state);
      const td = row.insertCell();
      button(td, q.paused ? 'Resume' : 'Pause', () => api('POST', 'queues/' + q.priority + (q.paused ? '/resume' : '/pause')));
      if (q.deadLetter > 0) button(td, 'Redrive all', () => api('POST', 'queues/' + q.priority + '/dead-letters/redrive', {all: true}));
    }
    const counts = queues.jobs;
    $('card-pending').textContent = counts.PENDING + counts.RETRYING; $('card-processing').textContent = counts.PROCESSING;
    $('card-completed').textContent = counts.COMPLETED; $('card-failed').textContent = counts.FAILED; $('card-dead').textContent = dead;
    const rBody = $('rates').tBodies[0]; rBody.innerHTML = '';
    for (const [name, w] of Object.entries(queues.windows)) {
      const row = rBody.insertRow(); row.dataset.window = name;
      cell(row, name); cell(row, w.completed); cell(row, w.failed); cell(row, w.retried); cell(row, w.processingRatePerMinute);
      cell(row, ms(w.avgProcessingMs)); cell(row, ms(w.p95ProcessingMs)); cell(row, ms(w.avgQueueWaitMs)); cell(row, pct(w.errorRate));
    }
    const jBody = $('jobs').tBodies[0]; jBody.innerHTML = '';
    for (const j of jobs.items) {
      const row = jBody.insertRow(); row.dataset.jobId = j.jobId;
      cell(row, j.jobId); cell(row, j.type); cell(row, j.status + (j.progress && ['PROCESSING', 'RETRYING'].includes(j.status) ? ' ' + j.progress.percent + '%' : ''), j.status); cell(row, j.priority);
      cell(row, j.attempts + '/' + j.maxAttempts); cell(row, new Date(j.updatedAt).toLocaleTimeString());
      const td = row.insertCell();
      if (['PENDING', 'RETRYING', 'FAILED'].includes(j.status)) button(td, 'Cancel', () => api('POST', 'jobs/' + encodeURIComponent(j.jobId) + '/cancel', {reason: 'Cancelled from the dashboard'}));
      if (j.status === 'FAILED') button(td, 'Retry', () => api('POST', 'jobs/' + encodeURIComponent(j.jobId) + '/retry', {}));
    }
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) { $('error').textContent = e.message; }
}
setInterval(() => { if ($('auto').checked && sessionStorage.getItem('tarefa-token')) refresh(); }, 3000);
if ($('token').value) refresh();
</script></body></html>
"""
