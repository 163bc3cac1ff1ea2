"""Workload panels on the operators' dashboard: a workload names a listing of its own records
and a route of figures per record (guests: an organiser's events and each event's metrics), and
the dashboard shows them with the caller's token, as it shows jobs. The engine knows nothing of
what the figures mean: it lists the records, and shows a record's figures as facts (nested keys
flattened, `...Ms` as durations, `...Rate` as shares) and lists of objects as tables.

Declared at import by a module TAREFA_JOB_MODULES loads (the API function serves the page), so
this module imports nothing: it is on every function's cold start.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

_PATH = re.compile(r"^[a-z0-9][a-z0-9/_-]*(\{[a-zA-Z]+\}[a-z0-9/_-]*)*$")


@dataclass(frozen=True)
class Panel:
    title: str  # "Events"
    items: str  # a GET route relative to the API's base answering {items, cursor}: "events"
    item_id: str  # the field of an item its figures are found by: "eventId"
    item_label: str  # the field shown to choose an item: "name"
    detail: str  # a GET route of one item's figures, {item_id} in it: "events/{eventId}/metrics"
    note: str = ""  # a line under the title

    def __post_init__(self) -> None:
        for route in (self.items, self.detail):
            if not _PATH.match(route):
                raise ValueError(f"a panel's route is relative and plain (no query): {route!r}")
        if "{" + self.item_id + "}" not in self.detail:
            raise ValueError(f"the detail route must hold {{{self.item_id}}}")


PANELS: dict[str, Panel] = {}


def declare_panel(panel: Panel) -> None:
    """Show `panel` on the dashboard (the last declaration of a title wins)."""
    PANELS[panel.title] = panel


def panels_json() -> str:
    """The declared panels for the page, safe inside a <script> element."""
    found = [{**asdict(p)} for p in PANELS.values()]
    return json.dumps(found, separators=(",", ":")).replace("<", "\\u003c")


# Injected before </main> (the section) and before </body> (the script, after the page's own:
# it uses the page's el(), api(), ms(), pct(), token() and showErrors()). textContent only.
SECTION = """<div id="workload-panels"></div>
<script id="panel-config" type="application/json">__PANELS__</script>
"""

SCRIPT = r"""<script>
(function () {
  const panels = JSON.parse(document.getElementById('panel-config').textContent || '[]');
  const root = document.getElementById('workload-panels');
  function label(key) { return key.replace(/([A-Z])/g, ' $1').replace(/\./g, ' > ').toLowerCase(); }
  function value(key, v) {
    if (v === null || v === undefined) return '-';
    if (typeof v === 'number' && /Ms$/.test(key)) return ms(v);
    if (typeof v === 'number' && /Rate$/.test(key)) return pct(v);
    return String(v);
  }
  function facts(data, prefix, dl, tables) {
    for (const [k, v] of Object.entries(data)) {
      const key = prefix ? prefix + '.' + k : k;
      if (Array.isArray(v) && v.length && typeof v[0] === 'object') tables.push([key, v]);
      else if (v && typeof v === 'object' && !Array.isArray(v)) facts(v, key, dl, tables);
      else { dl.append(el('dt', {textContent: label(key)}), el('dd', {textContent: Array.isArray(v) ? v.join(', ') : value(k, v)})); }
    }
  }
  function render(box, data) {
    box.replaceChildren();
    const dl = el('dl', {className: 'facts'}); const tables = [];
    facts(data, '', dl, tables); box.append(dl);
    for (const [key, rows] of tables) {
      const columns = Object.keys(rows[0]);
      const table = el('table', {}); const head = table.createTHead().insertRow();
      for (const c of columns) head.append(el('th', {textContent: label(c)}));
      const body = table.createTBody();
      for (const r of rows) { const tr = body.insertRow(); for (const c of columns) cell(tr, value(c, r[c]), 'num'); }
      box.append(el('h3', {textContent: label(key)}), table);
    }
  }
  async function show(panel, section) {
    const select = section.querySelector('select'); const box = section.querySelector('.figures');
    if (!select.value) { box.replaceChildren(el('p', {className: 'muted', textContent: 'Nothing to show yet.'})); return; }
    try { render(box, await api('GET', panel.detail.replace('{' + panel.item_id + '}', encodeURIComponent(select.value)))); }
    catch (e) { box.replaceChildren(el('p', {className: 'err', textContent: String(e)})); }
  }
  async function load(panel, section) {
    const select = section.querySelector('select'); const chosen = select.value;
    let page;
    try { page = await api('GET', panel.items + '?limit=100'); }
    catch (e) { section.querySelector('.figures').replaceChildren(el('p', {className: 'err', textContent: String(e)})); return; }
    select.replaceChildren(...page.items.map(item => el('option', {value: item[panel.item_id], textContent: item[panel.item_label] + ' (' + item[panel.item_id] + ')'})));
    if (chosen && page.items.some(i => i[panel.item_id] === chosen)) select.value = chosen;
    await show(panel, section);
  }
  const sections = panels.map(panel => {
    const select = el('select', {ariaLabel: panel.title});
    const reload = el('button', {textContent: 'Refresh'});
    const section = el('section', {className: 'panel workload-panel'},
      el('h2', {textContent: panel.title}), panel.note ? el('p', {className: 'note', textContent: panel.note}) : null,
      el('div', {className: 'bar'}, select, reload), el('div', {className: 'figures'}));
    section.dataset.panel = panel.title;
    select.onchange = () => show(panel, section); reload.onclick = () => load(panel, section);
    root.append(section);
    return [panel, section];
  });
  let started = false;
  function start() { if (!token() || started) return; started = true; for (const [p, s] of sections) load(p, s); }
  start(); setInterval(() => { if (!started) start(); }, 1000);
})();
</script>
"""


def with_panels(page: str) -> str:
    """The dashboard page with the declared panels (the page unchanged when there are none)."""
    if not PANELS:
        return page
    page = page.replace("</main>", SECTION.replace("__PANELS__", panels_json()) + "</main>", 1)
    return page.replace("</body>", SCRIPT + "</body>", 1)
