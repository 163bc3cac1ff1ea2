"""The operators' web dashboard: one self-contained page (no CDN, no build step, works offline).

It is a static shell with no data: it asks for a token once, keeps it in the tab's
sessionStorage, and reads everything through the API with it, so it sees exactly what that
token may see. Every token gets its jobs (GET /jobs, GET /jobs/{id}, cancel, retry); an admin
token also gets the queue figures and the dead letters (GET /queues and the dead-letter
routes). When GET /queues answers 403 the page stops asking and hides the queue panels.

Destructive actions (cancel, purge, redrive all) ask first in an in-page <dialog id="confirm">
(buttons #confirm-yes and #confirm-no), not window.confirm, so a browser test can click it.
The page builds every element with textContent, never innerHTML: job payloads, results and
errors are other people's data, shown to an admin.
"""

from __future__ import annotations

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tarefa dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
*{box-sizing:border-box}body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;flex-wrap:wrap;gap:10px 14px;align-items:center}
header h1{font-size:17px;margin:0 10px 0 0}#token{width:320px;padding:5px}
.tokenbox{display:flex;gap:6px;align-items:center}.auto{display:inline-flex;gap:6px;align-items:center;white-space:nowrap;cursor:pointer}
.auto input{margin:0}#who{color:#c9d1e3}#updated{color:#9aa4b8;margin-left:auto;font-variant-numeric:tabular-nums}
#error{background:#fdecea;color:#8e1c1c;border-bottom:1px solid #f5c2c0;padding:8px 20px;white-space:pre-line}
main{padding:12px 20px 30px}.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px}
.card{background:#fff;border-radius:8px;padding:12px;border-top:4px solid #999}
.card b{display:block;font-size:28px}.card small{color:#667}
.PENDING{border-color:#1769aa}.PROCESSING{border-color:#f9a825}.COMPLETED{border-color:#2e7d32}
.FAILED{border-color:#c62828}.DEAD{border-color:#6a1b9a}
table{width:100%;border-collapse:collapse;background:#fff;margin-top:8px}th,td{padding:6px 8px;border-bottom:1px solid #e3e5ea;text-align:left;vertical-align:top}
th{background:#eceef2;font-weight:600}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}td.actions{white-space:nowrap}p code{white-space:nowrap}.s{font-weight:600;padding:2px 6px;border-radius:4px;color:#fff;white-space:nowrap}
.s.PENDING{background:#1769aa}.s.PROCESSING{background:#b88600}.s.COMPLETED{background:#2e7d32}
.s.FAILED{background:#c62828}.s.CANCELLED{background:#757575}.s.RETRYING{background:#ef6c00}
h2{font-size:15px;margin:20px 0 4px}h2 small{font-weight:400;color:#667}button{cursor:pointer}button+button{margin-left:4px}
.bar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-top:8px}.bar button+button{margin-left:0}
.note{color:#556;margin:4px 0;max-width:900px}.muted{color:#889}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace}
a.job{color:#1456a0;text-decoration:none;white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}a.job:hover{text-decoration:underline}
#jobs tbody tr{cursor:pointer}#jobs tbody tr:hover{background:#f7f9fc}.err{color:#8e1c1c}
#no-token{background:#fff;border-radius:8px;padding:16px 20px;max-width:860px;margin-top:8px}
#no-token pre,#detail pre{background:#1d2330;color:#e6e6e6;padding:8px 10px;border-radius:4px;overflow:auto;white-space:pre-wrap;word-break:break-word}
#admin-note{background:#eef3fb;border:1px solid #cbd9ef;border-radius:6px;padding:8px 12px}
section.panel{background:#fff;border-radius:8px;padding:2px 12px 12px;margin-top:16px}
dialog{border:0;border-radius:10px;padding:0;box-shadow:0 10px 40px rgba(0,0,0,.35)}dialog::backdrop{background:rgba(20,24,34,.45)}
#detail{width:min(920px,95vw);max-height:92vh}#detail .body{padding:12px 18px 18px}
.dhead{display:flex;gap:10px;align-items:center;padding:12px 18px;background:#1d2330;color:#fff;position:sticky;top:0}
.dhead h2{margin:0;font-size:16px}.dhead code{font-size:13px}.dhead button{margin-left:auto}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:4px 14px;margin:8px 0}dl.facts dt{color:#667}dl.facts dd{margin:0}
#detail h3{font-size:13px;margin:14px 0 4px;text-transform:uppercase;letter-spacing:.04em;color:#556}
.progress{height:14px;background:#e3e5ea;border-radius:7px;overflow:hidden;max-width:520px}.progress div{height:100%;background:#1769aa}
ol.timeline{list-style:none;margin:4px 0;padding:0 0 0 14px;border-left:3px solid #d8dce3}
ol.timeline li{margin:0 0 8px;position:relative}ol.timeline li::before{content:"";position:absolute;left:-21px;top:4px;width:11px;height:11px;border-radius:50%;background:#8a93a6}
ol.timeline li.FAILED::before{background:#c62828}ol.timeline li.COMPLETED::before{background:#2e7d32}ol.timeline li.CANCELLED::before{background:#757575}ol.timeline li.RETRYING::before{background:#ef6c00}
ol.timeline b{display:inline-block;min-width:180px}ol.timeline time{font-variant-numeric:tabular-nums}
#confirm{width:min(520px,92vw);padding:18px 20px}#confirm h2{margin-top:0}#confirm input{width:100%;padding:5px}
.danger{background:#c62828;color:#fff;border:1px solid #a61f1f;border-radius:4px;padding:4px 10px}
footer{padding:0 20px 20px;color:#889;font-size:12px}
</style></head><body>
<header><h1>Tarefa</h1>
<div class="tokenbox"><input id="token" type="password" autocomplete="off" placeholder="Bearer token (kept for this tab only)">
<button id="use-token">Use token</button><button id="forget-token">Forget</button></div>
<span id="who"></span>
<label class="auto" for="auto"><input id="auto" type="checkbox" checked><span>Auto-refresh every 3 s</span></label>
<span id="updated"></span></header>
<div id="error" role="alert" hidden></div>
<main>
<section id="no-token" hidden>
<h2>This page needs a token</h2>
<p>The dashboard holds no data of its own: it reads the API with a bearer token, which you paste
above. It is kept in this tab only (sessionStorage) and forgotten when the tab closes.</p>
<p><b>Locally</b> (the stack <code>make run</code> or <code>tarefa local</code> started), mint one in a
terminal, from the repository's folder (the command is <code>.venv/bin/tarefa</code> there):</p>
<pre>tarefa token --user NAME            # NAME's own jobs
tarefa token --user NAME --admin    # every job, the queues and the dead letters</pre>
<p><b>On AWS</b>: a token of the stack's Cognito user pool (its <code>admin</code> group makes an admin),
or of the identity provider the stack trusts (<code>JwtIssuer</code>).</p>
</section>
<div id="app" hidden>
<p id="admin-note" hidden>You are signed in as a user: you see your own jobs and can cancel and retry them.
The queue figures and the dead letters are for admins (a token from <code>tarefa token --user NAME --admin</code>).</p>
<div id="admin-panels" hidden>
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
<section id="dlq" class="panel" hidden>
<h2>Dead letters in <span id="dlq-queue"></span> <small id="dlq-count"></small></h2>
<p class="note">Browsing is a receive: every look (and every dead-letter sweep) adds one to a message's
<i>receive count</i>. Messages stay in the dead-letter queue until redriven (sent back to their queue, their jobs
back to PENDING) or purged (deleted, their jobs end FAILED). This list does not refresh by itself.</p>
<div class="bar"><button id="dlq-reload">Browse again</button><button id="dlq-redrive-all">Redrive all</button>
<button id="dlq-purge-all">Purge all listed</button><button id="dlq-close">Close</button><span id="dlq-report"></span></div>
<table id="dlq-table"><thead><tr><th>Job</th><th>Type</th><th>Receive count</th><th>Last error</th><th>Failed at</th><th>Job status</th><th></th></tr></thead><tbody></tbody></table>
</section>
</div>
<h2 id="jobs-title">Jobs</h2>
<div class="bar"><select id="filter-status" aria-label="status"><option value="">any status</option>
<option>PENDING</option><option>PROCESSING</option><option>RETRYING</option><option>COMPLETED</option><option>FAILED</option><option>CANCELLED</option></select>
<input id="filter-type" placeholder="type, e.g. system.echo" aria-label="type"><button id="apply">Filter</button>
<button id="bulk-retry" title="Counts them first (a dry run), then asks">Retry all failed of this type&hellip;</button><span id="bulk-report" class="note"></span>
<label>per page <select id="page-size"><option>20</option><option>50</option><option>100</option></select></label></div>
<table id="jobs"><thead><tr><th>Job</th><th>Type</th><th>Status</th><th>Priority</th><th>Attempts</th><th>User</th><th>Created</th><th>Updated</th><th></th></tr></thead><tbody></tbody></table>
<div class="bar"><button id="prev" disabled>&larr; Previous</button><span id="page-info"></span><button id="next" disabled>Next &rarr;</button></div>
<h2 id="schedules-title">Schedules</h2>
<table id="schedules"><thead><tr><th>Name</th><th>Type</th><th>When</th><th>Time zone</th><th>Enabled</th><th>Next run</th><th>Last run</th></tr></thead><tbody></tbody></table>
</div>
</main>
<footer id="tz"></footer>
<dialog id="detail" aria-labelledby="detail-title">
<div class="dhead"><h2 id="detail-title">Job <code id="detail-id"></code></h2><span id="detail-status"></span><button id="detail-close">Close</button></div>
<div class="body">
<div id="detail-problem" class="err" role="alert" hidden></div>
<div class="bar" id="detail-actions"><button id="detail-cancel" class="danger" hidden>Cancel job&hellip;</button>
<button id="detail-retry" hidden>Retry</button><button id="detail-dlq" hidden>Open its dead-letter queue</button>
<span id="detail-rules" class="note"></span></div>
<dl class="facts">
<dt>Type</dt><dd id="detail-type"></dd><dt>Priority</dt><dd id="detail-priority"></dd>
<dt>Attempts</dt><dd id="detail-attempts"></dd><dt>Dead-lettered</dt><dd id="detail-dead"></dd>
<dt>User</dt><dd id="detail-user"></dd><dt>Order</dt><dd id="detail-order"></dd>
</dl>
<h3>Progress</h3><div id="detail-progress"></div>
<h3>Timeline</h3><ol class="timeline" id="detail-timeline"></ol>
<h3>Error</h3><pre id="detail-error"></pre>
<h3>Error details</h3><pre id="detail-error-details"></pre>
<h3>Payload</h3><pre id="detail-payload"></pre>
<h3>Result</h3><pre id="detail-result"></pre>
</div></dialog>
<dialog id="confirm" aria-labelledby="confirm-title">
<h2 id="confirm-title"></h2><p id="confirm-text"></p>
<label id="confirm-reason-box" hidden>Reason (optional)<br><input id="confirm-reason" maxlength="500"></label>
<div class="bar" style="justify-content:flex-end;margin-top:14px"><button id="confirm-no">Back</button><button id="confirm-yes" class="danger"></button></div>
</dialog>
<script>
'use strict';
const $ = id => document.getElementById(id);
const base = location.pathname.replace(/dashboard$/, '');
const CANCELLABLE = ['PENDING', 'RETRYING', 'FAILED'];
const state = {role: null, cursors: [null], next: null, seq: 0, jobsKey: '', queuesKey: '', detail: null, detailKey: '', dlq: null, dlqSeq: 0};

// -- helpers ---------------------------------------------------------------------------------
function el(tag, props, ...kids) { const e = document.createElement(tag); Object.assign(e, props || {}); for (const k of kids) if (k !== null && k !== undefined) e.append(k); return e; }
const pad = n => String(n).padStart(2, '0');
function when(iso) {
  if (!iso) return '\u2014';
  const d = new Date(iso); if (isNaN(d)) return String(iso);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}
function timeEl(iso) { return el('time', {textContent: when(iso), title: iso ? new Date(iso).toISOString() + ' (UTC)' : ''}); }
function ms(v) { return v === null || v === undefined ? '-' : v < 1000 ? v.toFixed(1) + ' ms' : (v / 1000).toFixed(2) + ' s'; }
function pct(v) { return v === null || v === undefined ? '-' : (v * 100).toFixed(1) + '%'; }
function pretty(v) { return v === null || v === undefined ? 'null' : JSON.stringify(v, null, 2); }
function badge(status, extra) { return el('span', {className: 's ' + status, textContent: status + (extra || '')}); }
function cell(row, content, cls) { const td = row.insertCell(); if (cls) td.className = cls; td.append(content === null || content === undefined ? '-' : content); return td; }
function token() { return sessionStorage.getItem('tarefa-token') || ''; }
function whoIs(t) {
  try { const p = JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))); return p.sub || p['cognito:username'] || ''; } catch (e) { return ''; }
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  toString() {
    let s = (this.status ? this.status + ' ' : '') + (this.code ? this.code + ': ' : (this.status ? ': ' : '')) + this.message;
    if (this.status === 401) s += ' \u2014 the token is missing, expired or not accepted: get a new one (locally: tarefa token --user NAME).';
    return s;
  }
}
async function api(method, path, body) {
  const headers = {'Content-Type': 'application/json'};
  if (token()) headers['Authorization'] = 'Bearer ' + token();
  let r;
  try { r = await fetch(base + path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)}); }
  catch (e) { throw new ApiError(0, 'UNREACHABLE', 'The API did not answer (' + e.message + ')'); }
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    const err = data && data.error;
    throw new ApiError(r.status, err && err.code, (err && err.message) || (data && data.message) || r.statusText || 'HTTP error');
  }
  return data;
}
function showErrors(lines) {
  const box = $('error'); const text = [...new Set(lines)].join('\n');
  box.textContent = text; box.hidden = !text;
}
function ask(title, text, yes, withReason) {
  return new Promise(resolve => {
    const d = $('confirm');
    $('confirm-title').textContent = title; $('confirm-text').textContent = text; $('confirm-yes').textContent = yes;
    $('confirm-reason-box').hidden = !withReason; $('confirm-reason').value = '';
    const done = answer => { d.close(); resolve(answer); };
    $('confirm-yes').onclick = () => done({reason: $('confirm-reason').value.trim()});
    $('confirm-no').onclick = () => done(null);
    d.oncancel = e => { e.preventDefault(); done(null); };
    d.showModal(); $('confirm-no').focus();
  });
}

// -- job actions (the API's rules: cancel PENDING/RETRYING/FAILED, retry FAILED) -------------
async function cancelJob(job) {
  const ok = await ask('Cancel job ' + job.jobId + '?', 'A ' + job.status + ' ' + job.type + ' job becomes CANCELLED, for good: it will not run (again).', 'Cancel job', true);
  if (!ok) return null;
  return api('POST', 'jobs/' + encodeURIComponent(job.jobId) + '/cancel', {reason: ok.reason || 'Cancelled from the dashboard'});
}
function retryJob(job) { return api('POST', 'jobs/' + encodeURIComponent(job.jobId) + '/retry'); }
async function act(action, where) {
  try { const result = await action(); if (result) showErrors([]); return result; }
  catch (e) { if (where) { where.textContent = String(e); where.hidden = false; } else showErrors([String(e)]); return null; }
  finally { refresh(); }
}
function button(label, onclick, action) { const b = el('button', {textContent: label}); b.dataset.action = action; b.onclick = e => { e.stopPropagation(); onclick(); }; return b; }

// -- the refresh: /jobs for everyone, /queues for admins -------------------------------------
function jobsQuery() {
  const q = new URLSearchParams({limit: $('page-size').value});
  if ($('filter-status').value) q.set('status', $('filter-status').value);
  if ($('filter-type').value.trim()) q.set('type', $('filter-type').value.trim());
  const cursor = state.cursors[state.cursors.length - 1]; if (cursor) q.set('cursor', cursor);
  return 'jobs?' + q;
}
async function refresh() {
  if (!token()) { showSignedOut(); return; }
  $('no-token').hidden = true; $('app').hidden = false;
  const seq = ++state.seq;
  const [jobs, queues] = await Promise.allSettled([api('GET', jobsQuery()), state.role === 'user' ? Promise.resolve(null) : api('GET', 'queues')]);
  if (seq !== state.seq) return;  // a newer refresh (another page, filter or token) has started
  const problems = [];
  if (queues.status === 'fulfilled' && queues.value) { state.role = 'admin'; renderQueues(queues.value); }
  else if (queues.status === 'rejected') {
    if (queues.reason.status === 403) state.role = 'user';
    else problems.push(queues.reason.status === 401 ? String(queues.reason) : 'Queues: ' + queues.reason);
  }
  const admin = state.role === 'admin';
  $('admin-panels').hidden = !admin; $('admin-note').hidden = state.role !== 'user';
  $('jobs-title').textContent = admin ? 'Jobs (every user\u2019s, newest first)' : state.role === 'user' ? 'Your jobs (newest first)' : 'Jobs';
  const user = whoIs(token()); $('who').textContent = (user ? user : 'token') + (state.role ? ' \u00b7 ' + state.role : '');
  if (jobs.status === 'fulfilled') renderJobs(jobs.value);
  else problems.push(jobs.reason.status === 401 ? String(jobs.reason) : 'Jobs: ' + jobs.reason);
  showErrors(problems);
  if (!problems.length) $('updated').textContent = 'Updated ' + when(new Date().toISOString());
  if (state.detail && $('detail').open) loadDetail(state.detail, false);
  loadSchedules(seq);
}
// -- user schedules (GET /schedules) and bulk retry (POST /jobs/bulk/retry) -------------------
async function loadSchedules(seq) {
  let page;
  try { page = await api('GET', 'schedules?limit=100'); } catch (e) { if (seq === state.seq) showErrors(['Schedules: ' + e]); return; }
  if (seq !== state.seq) return;
  const key = JSON.stringify(page.items); if (key === state.schedulesKey) return; state.schedulesKey = key;
  const body = $('schedules').tBodies[0]; body.textContent = '';
  if (!page.items.length) { const row = body.insertRow(); const td = cell(row, 'No schedules.', 'muted'); td.colSpan = 7; return; }
  for (const s of page.items) {
    const row = body.insertRow(); row.dataset.schedule = s.name;
    cell(row, s.owner ? s.owner + ' / ' + s.name : s.name); cell(row, s.type); cell(row, s.cron || s.rate); cell(row, s.timezone);
    cell(row, s.enabled ? 'yes' : 'no'); cell(row, s.nextRunAt ? timeEl(s.nextRunAt) : '-', 'num'); cell(row, s.lastRunAt ? timeEl(s.lastRunAt) : '-', 'num');
  }
}
async function bulkRetry() {
  const type = $('filter-type').value.trim();
  if (!type) { $('bulk-report').textContent = 'Filter by a type first.'; return; }
  $('bulk-report').textContent = 'Counting\u2026';
  try {
    const dry = await api('POST', 'jobs/bulk/retry', {type, status: 'FAILED', dryRun: true});
    $('bulk-report').textContent = '';
    if (!dry.matched) { $('bulk-report').textContent = 'No FAILED ' + type + ' jobs.'; return; }
    const whose = state.role === 'admin' ? ' (every user\u2019s)' : '';
    if (!await ask('Retry ' + dry.matched + ' failed ' + type + ' job' + (dry.matched === 1 ? '' : 's') + whose + '?', 'Each FAILED ' + type + ' job goes back to PENDING with its attempts reset and runs again. This runs as a bulk operation.', 'Retry ' + dry.matched)) return;
    const started = await api('POST', 'jobs/bulk/retry', {type, status: 'FAILED'});
    watchBulk(started.operationId);
  } catch (e) { $('bulk-report').textContent = String(e); }
}
async function watchBulk(id) {
  try {
    const op = await api('GET', 'jobs/bulk/' + encodeURIComponent(id));
    $('bulk-report').textContent = 'Bulk retry ' + op.status.toLowerCase() + ': ' + op.processed + ' of ' + op.matched + ' retried' + (op.failed ? ', ' + op.failed + ' refused' : '');
    if (op.status === 'RUNNING') setTimeout(() => watchBulk(id), 1000); else refresh();
  } catch (e) { $('bulk-report').textContent = String(e); }
}
$('bulk-retry').onclick = bulkRetry;
function renderQueues(overview) {
  const key = JSON.stringify(overview); if (key === state.queuesKey) return; state.queuesKey = key;
  let dead = 0;
  const qBody = $('queues').tBodies[0]; qBody.textContent = '';
  for (const q of overview.queues) {
    dead += q.deadLetter;
    const row = qBody.insertRow(); row.dataset.priority = q.priority;
    const w = q.windows['5m'];
    cell(row, q.priority); cell(row, q.waiting, 'num'); cell(row, q.inFlight, 'num'); cell(row, q.delayed, 'num'); cell(row, q.deadLetter, 'num');
    cell(row, w.processingRatePerMinute, 'num'); cell(row, ms(w.p95ProcessingMs), 'num'); cell(row, pct(w.errorRate), 'num'); cell(row, q.state);
    const td = row.insertCell(); td.className = 'actions';
    td.append(button(q.paused ? 'Resume' : 'Pause', () => act(() => api('POST', 'queues/' + q.priority + (q.paused ? '/resume' : '/pause'))), q.paused ? 'resume' : 'pause'));
    td.append(button('Dead letters', () => browse(q.priority), 'browse'));
    if (q.deadLetter > 0) td.append(button('Redrive all', () => redriveAll(q.priority), 'redrive-all'));
  }
  const counts = overview.jobs;
  $('card-pending').textContent = counts.PENDING + counts.RETRYING; $('card-processing').textContent = counts.PROCESSING;
  $('card-completed').textContent = counts.COMPLETED; $('card-failed').textContent = counts.FAILED; $('card-dead').textContent = dead;
  const rBody = $('rates').tBodies[0]; rBody.textContent = '';
  for (const [name, w] of Object.entries(overview.windows)) {
    const row = rBody.insertRow(); row.dataset.window = name;
    cell(row, name); cell(row, w.completed, 'num'); cell(row, w.failed, 'num'); cell(row, w.retried, 'num'); cell(row, w.processingRatePerMinute, 'num');
    cell(row, ms(w.avgProcessingMs), 'num'); cell(row, ms(w.p95ProcessingMs), 'num'); cell(row, ms(w.avgQueueWaitMs), 'num'); cell(row, pct(w.errorRate), 'num');
  }
}
function renderJobs(page) {
  state.next = page.nextCursor;
  $('prev').disabled = state.cursors.length < 2; $('next').disabled = !page.nextCursor;
  $('page-info').textContent = 'Page ' + state.cursors.length + ' \u00b7 ' + page.items.length + ' job' + (page.items.length === 1 ? '' : 's') +
    (page.nextCursor && page.items.length < Number($('page-size').value) ? ' (a filtered page may be short: Next looks further)' : '');
  const key = JSON.stringify(page.items); if (key === state.jobsKey) return; state.jobsKey = key;  // unchanged: keep the rows
  const body = $('jobs').tBodies[0]; body.textContent = '';
  if (!page.items.length) { const row = body.insertRow(); const td = cell(row, 'No jobs here.', 'muted'); td.colSpan = 9; return; }
  for (const j of page.items) {
    const row = body.insertRow(); row.dataset.jobId = j.jobId; row.onclick = () => openDetail(j.jobId);
    const link = el('a', {className: 'job', href: '#', textContent: j.jobId, title: 'Open the job'});
    link.onclick = e => { e.preventDefault(); e.stopPropagation(); openDetail(j.jobId); };
    cell(row, link);
    cell(row, j.type);
    cell(row, badge(j.status, j.progress && ['PROCESSING', 'RETRYING'].includes(j.status) ? ' ' + j.progress.percent + '%' : ''));
    cell(row, j.priority); cell(row, j.attempts + '/' + j.maxAttempts, 'num'); cell(row, j.userId);
    cell(row, timeEl(j.createdAt), 'num'); cell(row, timeEl(j.updatedAt), 'num');
    const td = row.insertCell(); td.className = 'actions';
    if (CANCELLABLE.includes(j.status)) td.append(button('Cancel', () => act(() => cancelJob(j)), 'cancel'));
    if (j.status === 'FAILED') td.append(button('Retry', () => act(() => retryJob(j)), 'retry'));
  }
}

// -- one job's detail ------------------------------------------------------------------------
function openDetail(jobId) {
  state.detail = jobId; $('detail-id').textContent = jobId; $('detail-problem').hidden = true;
  if (!$('detail').open) $('detail').showModal();
  loadDetail(jobId, true);
}
async function loadDetail(jobId, fresh) {
  try {
    const job = await api('GET', 'jobs/' + encodeURIComponent(jobId));
    const key = JSON.stringify(job);
    if (state.detail === jobId && (fresh || key !== state.detailKey)) { state.detailKey = key; renderDetail(job); }
  } catch (e) { if (state.detail === jobId) { $('detail-problem').textContent = String(e); $('detail-problem').hidden = false; } }
}
function renderDetail(j) {
  state.detailKey = JSON.stringify(j);
  $('detail-status').textContent = ''; $('detail-status').append(badge(j.status));
  $('detail-type').textContent = j.type; $('detail-priority').textContent = j.priority;
  $('detail-attempts').textContent = j.attempts + ' of ' + j.maxAttempts;
  $('detail-dead').textContent = j.deadLettered ? 'yes: its message is in the ' + j.priority + ' dead-letter queue' : 'no';
  $('detail-user').textContent = j.userId || '\u2014'; $('detail-order').textContent = j.orderId || '\u2014';
  const prog = $('detail-progress'); prog.textContent = '';
  if (j.progress) {
    const p = Math.max(0, Math.min(100, Number(j.progress.percent) || 0));
    const bar = el('div', {className: 'progress', title: p + '%'}); const fill = el('div'); fill.style.width = p + '%'; bar.append(fill);
    prog.append(bar, el('div', {}, el('b', {textContent: p + '%'}), j.progress.message ? ' \u2014 ' + j.progress.message : '', el('span', {className: 'muted'}, ' (reported ', timeEl(j.progress.updatedAt), ')')));
  } else prog.append(el('span', {className: 'muted', textContent: 'None reported.'}));
  const steps = [['Created', j.createdAt, '']];
  if (j.processingStartedAt) steps.push([j.attempts > 1 ? 'Attempt ' + j.attempts + ' started' : 'Processing started', j.processingStartedAt, 'PROCESSING']);
  if (j.lastAttemptAt && j.lastAttemptAt !== j.processingStartedAt) steps.push(['Last attempt', j.lastAttemptAt, '']);
  if (j.status === 'RETRYING' && j.nextRetryAt) steps.push(['Next retry', j.nextRetryAt, 'RETRYING']);
  if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(j.status)) steps.push([j.status, j.processingCompletedAt || j.updatedAt, j.status]);
  else steps.push([j.status + ' now', null, j.status]);
  const tl = $('detail-timeline'); tl.textContent = '';
  const start = Date.parse(j.createdAt);
  for (const [label, at, cls] of steps) {
    const li = el('li', {className: cls}, el('b', {textContent: label}));
    if (at) { li.append(timeEl(at)); const dt = (Date.parse(at) - start) / 1000; if (dt > 0) li.append(el('span', {className: 'muted', textContent: '  +' + (dt < 120 ? dt.toFixed(1) + ' s' : (dt / 60).toFixed(1) + ' min')})); }
    tl.append(li);
  }
  tl.append(el('li', {className: 'muted'}, el('b', {textContent: 'Last updated'}), timeEl(j.updatedAt)));
  for (const [id, v] of [['detail-error', j.error], ['detail-error-details', j.errorDetails], ['detail-payload', j.payload], ['detail-result', j.result]])
    $(id).textContent = typeof v === 'string' && id === 'detail-error' ? v : pretty(v);
  const cancel = $('detail-cancel'), retry = $('detail-retry'), dlq = $('detail-dlq');
  cancel.hidden = !CANCELLABLE.includes(j.status); retry.hidden = j.status !== 'FAILED';
  dlq.hidden = !(j.deadLettered && state.role === 'admin');
  cancel.onclick = async () => { const done = await act(() => cancelJob(j), $('detail-problem')); if (done) renderDetail(done); };
  retry.onclick = async () => { const done = await act(() => retryJob(j), $('detail-problem')); if (done) { $('detail-problem').hidden = true; renderDetail(done); } };
  dlq.onclick = () => { $('detail').close(); browse(j.priority); };
  $('detail-rules').textContent = CANCELLABLE.includes(j.status)
    ? (j.status === 'FAILED' ? 'A FAILED job can be retried (attempts start again) or cancelled.' : 'A ' + j.status + ' job can be cancelled; it cannot be retried until it has FAILED.')
    : 'A ' + j.status + ' job can be neither cancelled nor retried.';
}
$('detail-close').onclick = () => $('detail').close();
$('detail').onclose = () => { state.detail = null; };

// -- dead letters (admin) --------------------------------------------------------------------
async function browse(priority) {
  state.dlq = priority; const seq = ++state.dlqSeq;
  $('dlq').hidden = false; $('dlq-queue').textContent = priority; $('dlq-report').textContent = 'Browsing\u2026';
  try {
    const page = await api('GET', 'queues/' + priority + '/dead-letters?limit=100');
    if (seq !== state.dlqSeq) return;
    renderDeadLetters(page.items); $('dlq-report').textContent = 'Browsed ' + when(new Date().toISOString());
  } catch (e) { if (seq === state.dlqSeq) $('dlq-report').textContent = String(e); }
  $('dlq').scrollIntoView({block: 'nearest'});
}
function renderDeadLetters(items) {
  const body = $('dlq-table').tBodies[0]; body.textContent = '';
  $('dlq-count').textContent = items.length ? '(' + items.length + (items.length >= 100 ? ', the first 100' : '') + ')' : '';
  if (!items.length) { const row = body.insertRow(); cell(row, 'Nothing in this dead-letter queue.', 'muted').colSpan = 7; return; }
  for (const d of items) {
    const row = body.insertRow(); row.dataset.dlqJobId = d.jobId;
    const link = el('a', {className: 'job', href: '#', textContent: d.jobId, title: d.jobStatus ? 'Open the job' : 'No job record'});
    link.onclick = e => { e.preventDefault(); openDetail(d.jobId); };
    cell(row, link); cell(row, d.type); cell(row, d.receiveCount, 'num'); cell(row, d.lastError); cell(row, timeEl(d.failedAt), 'num');
    cell(row, d.jobStatus ? badge(d.jobStatus) : el('span', {className: 'muted', textContent: 'no job record'}));
    const td = row.insertCell(); td.className = 'actions';
    td.append(button('Redrive', () => dlqAction(state.dlq, 'redrive', {jobIds: [d.jobId]}), 'redrive'));
    td.append(button('Purge', async () => {
      if (await ask('Purge ' + d.jobId + '?', 'The message is deleted from the ' + state.dlq + ' dead-letter queue and its job ends FAILED. This cannot be undone.', 'Purge')) dlqAction(state.dlq, 'purge', {jobIds: [d.jobId]});
    }, 'purge'));
  }
}
function describeReport(verb, r) {
  const parts = [verb + ' ' + r.jobIds.length + (r.jobIds.length ? ': ' + r.jobIds.join(', ') : '')];
  if (r.notFound.length) parts.push('not in the queue: ' + r.notFound.join(', '));
  for (const s of r.skipped) parts.push('skipped ' + s.jobId + ' (' + s.reason + ')');
  if (!r.complete) parts.push('stopped after about 20 s: do it again for the rest');
  return parts.join('; ');
}
async function dlqAction(priority, verb, body) {
  $('dlq-report').textContent = (verb === 'purge' ? 'Purging' : 'Redriving') + '\u2026';
  try {
    const report = await api('POST', 'queues/' + priority + '/dead-letters/' + verb, body);
    if (state.dlq === priority) {
      for (const id of report.jobIds) for (const row of $('dlq-table').querySelectorAll('tbody tr')) if (row.dataset.dlqJobId === id) row.remove();
      $('dlq-report').textContent = describeReport(verb === 'purge' ? 'Purged' : 'Redriven', report);
    }
  } catch (e) { $('dlq-report').textContent = String(e); }
  refresh();
}
async function redriveAll(priority) {
  if (!await ask('Redrive every dead letter of ' + priority + '?', 'Every job message in the ' + priority + ' dead-letter queue goes back to its queue and its job back to PENDING, with attempts reset. Messages that are not job messages stay (purge them).', 'Redrive all')) return;
  if (state.dlq !== priority) { state.dlq = priority; $('dlq').hidden = false; $('dlq-queue').textContent = priority; $('dlq-table').tBodies[0].textContent = ''; }
  dlqAction(priority, 'redrive', {all: true});
}
$('dlq-reload').onclick = () => browse(state.dlq);
$('dlq-redrive-all').onclick = () => redriveAll(state.dlq);
$('dlq-purge-all').onclick = async () => {
  const ids = [...$('dlq-table').querySelectorAll('tbody tr')].map(r => r.dataset.dlqJobId).filter(Boolean);
  if (!ids.length) { $('dlq-report').textContent = 'Nothing listed to purge.'; return; }
  if (await ask('Purge ' + ids.length + ' dead letter' + (ids.length === 1 ? '' : 's') + '?', 'The ' + ids.length + ' listed messages are deleted from the ' + state.dlq + ' dead-letter queue and their jobs end FAILED. This cannot be undone.', 'Purge ' + ids.length)) dlqAction(state.dlq, 'purge', {jobIds: ids});
};
$('dlq-close').onclick = () => { $('dlq').hidden = true; state.dlq = null; };

// -- token, filters, paging, auto-refresh ----------------------------------------------------
function showSignedOut() {
  $('no-token').hidden = false; $('app').hidden = true; $('who').textContent = ''; $('updated').textContent = ''; showErrors([]);
}
function restart() { state.role = null; state.cursors = [null]; state.jobsKey = state.queuesKey = state.schedulesKey = ''; state.seq++; $('dlq').hidden = true; state.dlq = null; refresh(); }
$('token').value = token();
$('use-token').onclick = () => { sessionStorage.setItem('tarefa-token', $('token').value.trim()); restart(); };
$('token').onkeydown = e => { if (e.key === 'Enter') $('use-token').click(); };
$('forget-token').onclick = () => { sessionStorage.removeItem('tarefa-token'); $('token').value = ''; state.seq++; showSignedOut(); };
const firstPage = () => { state.cursors = [null]; refresh(); };
$('apply').onclick = firstPage; $('filter-status').onchange = firstPage; $('page-size').onchange = firstPage;
$('filter-type').onkeydown = e => { if (e.key === 'Enter') firstPage(); };
$('next').onclick = () => { if (state.next) { state.cursors.push(state.next); refresh(); } };
$('prev').onclick = () => { if (state.cursors.length > 1) { state.cursors.pop(); refresh(); } };
const offset = -new Date().getTimezoneOffset();
$('tz').textContent = 'Times are in this browser\u2019s time zone (UTC' + (offset < 0 ? '-' : '+') + pad(Math.floor(Math.abs(offset) / 60)) + ':' + pad(Math.abs(offset) % 60) + '); hover one for UTC.';
setInterval(() => { if ($('auto').checked && token() && !document.hidden) refresh(); }, 3000);
refresh();
</script></body></html>
"""
