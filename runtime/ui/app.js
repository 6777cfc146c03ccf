// Oort's console: one page, hash routes (#/rules, #/rule/<id>, #/new, #/edit/<id>, #/streams,
// #/plugins), the server's REST API for everything it does, and server-sent events for live
// counters. Written by hand as plain modules: there is no build step.
import { follow } from '/ui/live.js';

const main = document.getElementById('main');
const conn = document.getElementById('conn');
const PAGE = 50;
const HISTORY = 60;

// ---- the API, with the token asked for once and kept for this tab ----

// The token is kept in this tab's sessionStorage and nowhere else: a reload, or another view
// of the console in the same tab, sends it again without asking; another tab or browser asks.
// It goes in the `Authorization` header of every call, never in a URL.
const tokenKey = 'oort-token';
const storedToken = () => sessionStorage.getItem(tokenKey);
const authHeaders = (token = storedToken()) => (token ? { Authorization: `Bearer ${token}` } : {});

// One dialog at a time: every call refused meanwhile waits for the same answer.
let asking = null;

// The server answered 401 to a call that sent the token `sent` (null: none). Resolves true
// when there is a token to try (one stored since that call was sent, or one just typed) and
// false when the dialog was dismissed without one. A token that was sent and refused (a wrong
// one, or one the server no longer accepts) is forgotten, and the dialog says so.
function unauthorized(sent) {
  const now = storedToken();
  if (now !== null && now !== sent) return Promise.resolve(true);
  if (now !== null) sessionStorage.removeItem(tokenKey);
  asking ??= askToken(sent !== null).finally(() => { asking = null; });
  return asking;
}

function askToken(refused) {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  const error = document.getElementById('token-error');
  setConn(refused ? 'refused' : 'unauthorized');
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const token = dialog.returnValue === 'use' ? input.value.trim() : '';
      input.value = '';
      if (token) sessionStorage.setItem(tokenKey, token);
      resolve(token !== '');
    }, { once: true });
    dialog.returnValue = '';
    error.hidden = !refused;
    dialog.showModal();
    input.focus();
    // Set once shown, so that the alert is announced.
    error.textContent = refused ? 'The server refused that token. Check it and paste it again.' : '';
  });
}

// A call refused for want of a token, the dialog dismissed: the page says so (see `noToken`).
class NoToken extends Error {}

// The page without a token: why it is empty, and a button (focused) that asks again.
function noToken() {
  const again = h('button', { id: 'enter-token', onclick: () => route() }, 'Enter a token');
  main.replaceChildren(h('p', { class: 'error', role: 'alert', id: 'no-token' }, 'This server needs a token: nothing is shown without one.'), again);
  again.focus();
}

// A call made outside the page's drawing (a button's) and refused the same way.
window.addEventListener('unhandledrejection', (e) => {
  if (e.reason instanceof NoToken) { e.preventDefault(); noToken(); }
});

async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const sent = storedToken();
    const init = { method, headers: authHeaders(sent) };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const answer = await fetch(path, init);
    if (answer.status === 401 && attempt < 3) {
      if (await unauthorized(sent)) continue;
      throw new NoToken(`${path}: no token`);
    }
    const text = await answer.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* a plain-text answer */ }
    return { status: answer.status, ok: answer.ok, text, json, message: json?.message ?? text };
  }
}

// Follows the event stream `path` with the tab's token. A 401 (no token yet, or one the
// server refuses now, say after a restart with another token file) asks for a token and draws
// the page again with it; dismissing the dialog says why the page is empty.
function live(path, signal, onEvent) {
  let sent = null;
  const headers = () => { sent = storedToken(); return authHeaders(sent); };
  follow(path, headers, signal, onEvent, (state) => {
    setConn(state);
    if (state !== 'unauthorized' || signal.aborted) return;
    unauthorized(sent).then((given) => {
      if (signal.aborted) return;
      if (given) route(); else noToken();
    });
  });
}

// ---- small helpers ----

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function sparkline(values, label, span = HISTORY) {
  const w = 100, hgt = 22;
  const max = Math.max(1, ...values);
  // The newest value at the right edge, one step a second to the left for older ones.
  const step = w / (span - 1);
  const pts = values.map((v, i) => `${w - (values.length - 1 - i) * step},${hgt - 1 - (v / max) * (hgt - 2)}`).join(' ');
  return s('svg', { class: 'spark', width: w, height: hgt, role: 'img', 'aria-label': label }, s('polyline', { points: pts }));
}

const rate = (n) => (n >= 100 ? Math.round(n) : Math.round(n * 10) / 10).toLocaleString('en');

// Status as text, a symbol and a colour (the colour is never the only carrier).
function statusBadge(status) {
  const kind = /^Running/i.test(status) ? 'running' : /^Starting/i.test(status) ? 'starting' : 'stopped';
  const symbol = { running: '▶', starting: '…', stopped: '■' }[kind];
  return h('span', { class: `status ${kind}`, 'data-status': kind }, `${symbol} ${status}`);
}

function setConn(state) {
  conn.textContent = { live: 'live updates on', retrying: 'reconnecting…', unauthorized: 'token needed', refused: 'token refused', gone: 'gone' }[state] ?? state;
}

function announce(text, bad) {
  const p = h('p', { role: 'alert', class: bad ? 'error' : 'note' }, text);
  main.prepend(p);
  setTimeout(() => p.remove(), 8000);
}

// ---- live counters of the rules list ----

// id -> { status, counts: [in, out, exceptions, late], hin: [], hout: [], rin, rout }
const rules = new Map();
let lastTick = 0;

function applyRules(data) {
  const t = data.t;
  const dt = lastTick ? (t - lastTick) / 1000 : 0;
  lastTick = t;
  let membership = false;
  for (const [id, value] of Object.entries(data.rules)) {
    if (value === null) { rules.delete(id); membership = true; continue; }
    const [status, rowsIn, rowsOut, exc, late] = value;
    let r = rules.get(id);
    if (!r) { r = { status, counts: [rowsIn, rowsOut, exc, late ?? 0], hin: [], hout: [], rin: 0, rout: 0, fresh: true }; rules.set(id, r); membership = true; }
    r.status = status;
    r.next = [rowsIn, rowsOut, exc, late ?? 0];
  }
  for (const r of rules.values()) {
    if (r.next && !r.fresh && dt > 0) {
      r.rin = Math.max(0, r.next[0] - r.counts[0]) / dt;
      r.rout = Math.max(0, r.next[1] - r.counts[1]) / dt;
    } else { r.rin = 0; r.rout = 0; }
    if (r.next) r.counts = r.next;
    r.next = null; r.fresh = false;
    r.hin.push(r.rin); r.hout.push(r.rout);
    if (r.hin.length > HISTORY) { r.hin.shift(); r.hout.shift(); }
  }
  return membership;
}

// ---- cache depth, from the history the server keeps ----

// The server keeps up to CACHE_KEPT points `[unix s, highest depth in that second, depth at
// its end]`, one per second in which the depth changed; the sparkline covers CACHE_SPAN s.
const CACHE_KEPT = 300;
const CACHE_SPAN = 300;

// The depth each second of the span ending at `nowS` (the peak of a second with a change, the
// depth carried on otherwise); seconds older than a full history are left out, not guessed.
function depthSeries(points, nowS) {
  const out = [];
  const from = nowS - CACHE_SPAN + 1;
  let i = 0;
  let carry = points.length < CACHE_KEPT ? 0 : null;
  while (i < points.length && points[i][0] < from) { carry = points[i][2]; i++; }
  for (let t = from; t <= nowS; t++) {
    if (i < points.length && points[i][0] === t) { out.push(points[i][1]); carry = points[i][2]; i++; }
    else if (carry !== null) out.push(carry);
  }
  return out;
}

// ---- pages ----

let leave = new AbortController();
const view = { page: 0, filter: '' };

// The list's frame is index.html's own (the page's first frame, painted before this script
// runs): taken over as it is on the first visit, copied when coming back from another page.
const rulesFrame = document.getElementById('rules-frame').cloneNode(true);
rulesFrame.removeAttribute('data-pristine');

function takeRulesFrame() {
  // The first frame hid the list for another page's address; it is shown from now on.
  document.documentElement.classList.remove('elsewhere');
  const painted = document.getElementById('rules-frame');
  if (painted?.hasAttribute('data-pristine')) {
    painted.removeAttribute('data-pristine');
    main.querySelector('.first-loading')?.remove();
    return painted;
  }
  const frame = rulesFrame.cloneNode(true);
  main.replaceChildren(frame);
  return frame;
}

// The list is drawn from the first event of `/events/rules` (every rule with its status and
// counters, then only what changed): one request, no separate `GET /rules`, and the page's
// frame is painted before it answers.
function rulesPage(signal) {
  rules.clear(); lastTick = 0;
  const frame = takeRulesFrame();
  const tbody = frame.querySelector('tbody');
  const pager = frame.querySelector('.pager');
  const filter = frame.querySelector('#filter');
  filter.value = view.filter;
  let loaded = false;
  filter.addEventListener('input', () => { view.filter = filter.value; view.page = 0; if (loaded) renderRows(); });
  const rows = new Map();
  function visible() {
    const ids = [...rules.keys()].filter((id) => id.includes(view.filter)).sort();
    return ids;
  }
  function renderRows() {
    const ids = visible();
    const pages = Math.max(1, Math.ceil(ids.length / PAGE));
    view.page = Math.min(view.page, pages - 1);
    const shown = ids.slice(view.page * PAGE, view.page * PAGE + PAGE);
    rows.clear();
    tbody.replaceChildren(...shown.map((id) => {
      const row = ruleRow(id);
      rows.set(id, row);
      return row.tr;
    }));
    pager.replaceChildren(
      h('button', { onclick: () => { view.page--; renderRows(); }, disabled: view.page === 0 }, '← Previous'),
      h('span', { id: 'page-info' }, `Page ${view.page + 1} of ${pages} · ${ids.length} rules`),
      h('button', { onclick: () => { view.page++; renderRows(); }, disabled: view.page >= pages - 1 }, 'Next →'),
    );
  }
  function ruleRow(id) {
    const r = rules.get(id);
    const cells = {
      status: h('td'), rin: h('td', { class: 'num' }), rout: h('td', { class: 'num' }), exc: h('td', { class: 'num exceptions' }),
      late: h('td', { class: 'num late' }),
    };
    const act = (what) => h('button', {
      class: what === 'drop' ? 'danger' : undefined, 'data-action': what, 'aria-label': `${what} rule ${id}`,
      onclick: () => ruleAction(id, what),
    }, what[0].toUpperCase() + what.slice(1));
    const tr = h('tr', { 'data-rule': id },
      h('td', {}, h('a', { href: `#/rule/${encodeURIComponent(id)}` }, id)),
      cells.status, cells.rin, cells.rout, cells.exc, cells.late,
      h('td', {}, act('start'), ' ', act('stop'), ' ', act('restart'), ' ', act('drop')));
    const row = { tr, cells };
    paintRow(row, r);
    return row;
  }
  function paintRow(row, r) {
    row.cells.status.replaceChildren(statusBadge(r.status));
    row.cells.rin.replaceChildren(sparkline(r.hin, 'rows in per second'), ' ', h('span', { class: 'rate-in' }, rate(r.rin)));
    row.cells.rout.replaceChildren(sparkline(r.hout, 'rows out per second'), ' ', h('span', { class: 'rate-out' }, rate(r.rout)));
    row.cells.exc.textContent = r.counts[2];
    row.cells.late.textContent = r.counts[3];
  }
  live('/events/rules', signal, ({ event, data }) => {
    if (event !== 'rules') return;
    const membership = applyRules(JSON.parse(data));
    if (membership || !loaded) {
      renderRows();
      if (!loaded) { loaded = true; performance.mark('oort-rules-rendered'); }
      return;
    }
    for (const [id, row] of rows) { const r = rules.get(id); if (r) paintRow(row, r); }
  });
}

async function ruleAction(id, what) {
  if (what === 'drop' && !confirm(`Drop rule ${id}?`)) return;
  const path = what === 'drop' ? `/rules/${encodeURIComponent(id)}` : `/rules/${encodeURIComponent(id)}/${what}`;
  const answer = await api(what === 'drop' ? 'DELETE' : 'POST', path);
  announce(answer.message, !answer.ok);
  if (what === 'drop' && answer.ok && location.hash.startsWith('#/rule/')) location.hash = '#/rules';
}

// ---- one rule ----

function topoGraph(topo, status, rates) {
  const nodes = new Map();
  const columns = [topo.sources, ['op_project'], topo.edges.op_project ?? []];
  const colX = [10, 250, 490];
  const boxW = 200, boxH = 34, gap = 20;
  columns.forEach((col, c) => col.forEach((name, i) => nodes.set(name, { x: colX[c], y: 10 + i * (boxH + gap) })));
  const height = 20 + Math.max(...columns.map((c) => c.length), 1) * (boxH + gap);
  const svg = s('svg', { class: 'graph', width: 700, height, role: 'img', 'aria-label': 'Topology of the rule' },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#5f6368' }))));
  for (const [from, tos] of Object.entries(topo.edges)) {
    for (const to of tos) {
      const a = nodes.get(from), b = nodes.get(to);
      if (!a || !b) continue;
      const x1 = a.x + boxW, y1 = a.y + boxH / 2, x2 = b.x, y2 = b.y + boxH / 2;
      svg.append(s('path', { d: `M${x1},${y1} C${x1 + 20},${y1} ${x2 - 20},${y2} ${x2},${y2}` }));
      const label = to === 'op_project' ? rates[`${from}_0_records_out_total`] : rates[`${to}_0_records_in_total`];
      svg.append(s('text', { class: 'rate', x: (x1 + x2) / 2 - 15, y: (y1 + y2) / 2 - 4, 'data-edge': `${from}->${to}` }, `${rate(label ?? 0)}/s`));
    }
  }
  for (const [name, p] of nodes) {
    svg.append(s('rect', { x: p.x, y: p.y, width: boxW, height: boxH, rx: 4 }));
    svg.append(s('text', { x: p.x + 8, y: p.y + 21 }, name));
  }
  return svg;
}

async function rulePage(signal, id) {
  const [rule, topo] = await Promise.all([api('GET', `/rules/${encodeURIComponent(id)}`), api('GET', `/rules/${encodeURIComponent(id)}/topo`)]);
  if (!rule.ok) { main.replaceChildren(h('p', { class: 'error' }, rule.message)); return; }
  const status = {};
  const last = {};
  const rates = {};
  let t0 = 0;
  const head = h('div', { class: 'toolbar' });
  const graph = h('div');
  // What the query left when its input ended (event-time windows never closed, rows the
  // watermark still held): not sent, as eKuiper; shown only when there is any.
  const atEnd = h('p', { class: 'at-end', hidden: true });
  const actions = h('div');
  const histories = h('div');
  main.replaceChildren(
    h('h1', {}, `Rule ${id}`), head,
    h('section', {}, h('h2', {}, 'Topology'), graph, atEnd),
    h('section', {}, h('h2', {}, 'Actions'), actions),
    h('section', {}, h('h2', {}, 'Reloads, dead letters and traps (the last 20 of each, kept by the server)'), histories),
    h('section', {}, h('h2', {}, 'Definition'), h('pre', {}, JSON.stringify(rule.json, null, 2))));
  const button = (what) => h('button', { 'data-action': what, onclick: () => ruleAction(id, what), class: what === 'drop' ? 'danger' : undefined }, what[0].toUpperCase() + what.slice(1));
  const sinks = (topo.json?.edges?.op_project ?? []);
  // The buttons are made once, so keyboard focus stays where it is while the counters move.
  const badge = h('span', { id: 'rule-status' });
  head.replaceChildren(badge, button('start'), button('stop'), button('restart'), h('a', { href: `#/edit/${encodeURIComponent(id)}` }, 'Edit'), button('drop'));
  // The cache depth over the last five minutes, drawn from the server's history (so it
  // covers the time before the page was opened), with its peak in words.
  function cacheDepth(sink) {
    const values = depthSeries(status[`${sink}_0_cache_history`] ?? [], Math.floor(t0 / 1000));
    const peak = Math.max(0, ...values);
    const label = `cache depth over the last 5 minutes, peak ${peak}`;
    const spark = sparkline(values, label, CACHE_SPAN);
    spark.classList.add('cache-depth');
    spark.setAttribute('data-peak', peak);
    return h('span', { title: label }, spark);
  }
  function paint() {
    badge.replaceChildren(statusBadge(status.status === 'running' ? 'Running' : status.status === 'starting' ? 'Starting' : `Stopped${status.message ? `: ${status.message}` : ''}`));
    if (topo.ok) graph.replaceChildren(topoGraph(topo.json, status, rates));
    const windows = status.op_project_0_windows_open_at_end ?? 0;
    const held = status.op_project_0_rows_held_at_end ?? 0;
    atEnd.hidden = !(windows || held);
    atEnd.dataset.windows = windows;
    atEnd.dataset.rows = held;
    atEnd.textContent = `⚠ At the end of its input the query left ${windows} window${windows === 1 ? '' : 's'} open `
      + `and ${held} row${held === 1 ? '' : 's'} held by the watermark: not sent (the rule option fireAtEnd sends them).`;
    const get = (sink, key) => status[`${sink}_0_${key}`] ?? '—';
    actions.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, ...['Action', 'In', 'Out', 'Failed', 'Omitted', 'Retries', 'Cached', 'Dead letters', 'Trap restarts', 'Version', 'Reloads', 'Refused builds', 'Max swap pause', 'Last error'].map((c) => h('th', {}, c)))),
      h('tbody', {}, ...sinks.map((sink) => h('tr', { 'data-sink': sink },
        h('td', {}, sink), h('td', { class: 'num' }, get(sink, 'records_in_total')), h('td', { class: 'num' }, get(sink, 'records_out_total')),
        h('td', { class: 'num' }, get(sink, 'failed_total')), h('td', { class: 'num' }, get(sink, 'omitted_total')),
        h('td', { class: 'num' }, get(sink, 'retries_total')),
        h('td', { class: 'num' }, cacheDepth(sink), ' ', get(sink, 'cached')),
        h('td', { class: 'num' }, get(sink, 'dead_letter_total')), h('td', { class: 'num' }, get(sink, 'restarts_total')),
        h('td', { class: 'version' }, String(get(sink, 'version') ?? '—')), h('td', { class: 'num' }, get(sink, 'reloads_total')),
        h('td', { class: 'num' }, get(sink, 'reload_refusals_total')), h('td', { class: 'num' }, `${get(sink, 'swap_pause_max_us')} µs`),
        h('td', {}, get(sink, 'last_exception') || '—'))))));
    histories.replaceChildren(...sinks.map((sink) => actionHistories(sink, (key) => status[`${sink}_0_${key}`])));
  }
  paint();
  live(`/events/rules/${encodeURIComponent(id)}`, signal, ({ event, data }) => {
    if (event === 'dropped') { announce(`Rule ${id} was dropped.`); return; }
    const d = JSON.parse(data);
    const dt = t0 ? (d.t - t0) / 1000 : 0;
    t0 = d.t;
    for (const [k, v] of Object.entries(d.status)) status[k] = v;
    for (const [k, v] of Object.entries(status)) {
      if (k.endsWith('_total') && typeof v === 'number') {
        rates[k] = dt > 0 && last[k] !== undefined ? Math.max(0, v - last[k]) / dt : 0;
        last[k] = v;
      }
    }
    paint();
  });
}

// One action's histories: its reloads (build taken over with the swap pause, or refused with
// why), dead-lettered batches and trapped instances, newest first.
function actionHistories(sink, get) {
  const when = (at) => { const d = new Date(at); return isNaN(d) ? at : d.toLocaleString(); };
  const list = (kind, title, items, line) => h('div', { class: 'history' },
    h('h3', {}, `${sink}: ${title}`),
    items.length ? h('ol', { class: kind }, ...items.slice().reverse().map(line)) : h('p', { class: 'note' }, 'none'));
  const reloads = get('reload_history') ?? [];
  const dead = get('dead_letter_history') ?? [];
  const traps = get('trap_history') ?? [];
  return h('section', { 'data-histories': sink },
    list('reload-history', 'reloads', reloads, (r) => r.refused
      ? h('li', { 'data-refused': r.to, class: 'error' }, `✖ ${when(r.at)} · instance ${r.instance}: build ${r.to} refused, ${r.from} kept running: ${r.refused}`)
      : h('li', { 'data-swapped': r.to }, `✔ ${when(r.at)} · instance ${r.instance}: ${r.from} → ${r.to}, swap pause ${r.pause_us} µs`)),
    list('dead-letters', 'dead letters', dead, (d) => h('li', {}, `${when(d.at)} · ${d.rows} row(s): ${d.message}`)),
    list('traps', 'instance restarts after a trap', traps, (t) => h('li', {}, `${when(t.at)} · batch of ${t.rows} row(s): ${t.message}`)));
}

// ---- editors: the server checks what is typed on every pause ----

function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }

// A text area with line numbers; `mark(line)` highlights a line of the gutter.
function editor(id, label, value, cls) {
  const area = h('textarea', { id, class: cls, spellcheck: 'false' });
  area.value = value;
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
  let marked = 0;
  const numbers = () => gutter.replaceChildren(...area.value.split('\n').map((_, i) => h('div', { class: i + 1 === marked ? 'err' : undefined }, i + 1)));
  area.addEventListener('input', numbers);
  numbers();
  return {
    area,
    node: h('div', {}, h('label', { for: id }, label), h('div', { class: 'editor' }, gutter, area)),
    mark(line) { marked = line; numbers(); },
  };
}

// Finds `line L, column C` in a message.
function position(message) {
  const m = /line (\d+),? column (\d+)/i.exec(message);
  return m ? { line: +m[1], column: +m[2] } : null;
}

// The server's verdict on what is typed: a status, or an alert when `urgent` (a save refused).
function verdictNode(ok, message, text, urgent = false) {
  if (ok) return h('div', { class: 'verdict ok', id: 'verdict', role: 'status', 'data-valid': 'true' }, `✔ ${message}`);
  const where = position(message);
  const node = h('div', { class: 'verdict bad', id: 'verdict', role: urgent ? 'alert' : 'status', 'data-valid': 'false' }, `✖ ${message}`);
  if (where && text !== undefined) {
    const line = text.split('\n')[where.line - 1];
    if (line !== undefined) {
      node.dataset.line = where.line;
      node.dataset.column = where.column;
      node.append(h('span', { class: 'where' }, `${line}\n${' '.repeat(Math.max(0, where.column - 1))}^ line ${where.line}, column ${where.column}`));
    }
  }
  return node;
}

async function ruleEditor(id) {
  let rule = { id: '', sql: 'SELECT * FROM ', actions: [{ log: {} }] };
  if (id) {
    const got = await api('GET', `/rules/${encodeURIComponent(id)}`);
    if (!got.ok) { main.replaceChildren(h('p', { class: 'error' }, got.message)); return; }
    rule = got.json;
  }
  const idInput = h('input', { type: 'text', id: 'rule-id', value: rule.id, disabled: !!id });
  const sql = editor('rule-sql', 'SQL', rule.sql ?? '', 'sql');
  const actions = editor('rule-actions', 'Actions (JSON)', JSON.stringify(rule.actions ?? [], null, 2), 'json');
  const options = editor('rule-options', 'Options (JSON, optional)', rule.options ? JSON.stringify(rule.options, null, 2) : '', 'json');
  const verdict = h('div', { 'aria-live': 'polite' });
  // Each field is described by the verdict, and marked invalid when the verdict is about it.
  const fields = { sql: sql.area, actions: actions.area, options: options.area };
  for (const area of Object.values(fields)) area.setAttribute('aria-describedby', 'verdict');
  const flag = (bad) => { for (const [name, area] of Object.entries(fields)) area.setAttribute('aria-invalid', String(name === bad)); };
  const build = () => {
    let parsedActions, parsedOptions;
    try { parsedActions = JSON.parse(actions.area.value || '[]'); } catch (e) { return { error: `Actions: ${e.message}` }; }
    try { parsedOptions = options.area.value.trim() ? JSON.parse(options.area.value) : undefined; } catch (e) { return { error: `Options: ${e.message}` }; }
    const out = { ...rule, id: idInput.value.trim(), sql: sql.area.value, actions: parsedActions };
    if (parsedOptions) out.options = parsedOptions; else delete out.options;
    return { rule: out };
  };
  let seq = 0;
  const check = async () => {
    const mine = ++seq;
    const { rule: candidate, error } = build();
    if (error) { flag(error.startsWith('Actions') ? 'actions' : 'options'); verdict.replaceChildren(verdictNode(false, error)); return; }
    if (!candidate.id) candidate.id = 'draft';
    const answer = await api('POST', '/rules/validate', candidate);
    if (mine !== seq) return;
    const ok = answer.status === 200;
    const where = ok ? null : position(answer.text);
    sql.mark(where ? where.line : 0);
    flag(where ? 'sql' : null);
    verdict.replaceChildren(verdictNode(ok, ok ? `valid · reads ${answer.json.sources.join(', ') || 'nothing'}` : answer.text, sql.area.value));
  };
  const onPause = debounce(check, 400);
  for (const a of [sql.area, actions.area, options.area, idInput]) a.addEventListener('input', onPause);
  const save = h('button', { type: 'submit', id: 'save-rule' }, id ? 'Update rule' : 'Create rule');
  const form = h('form', { id: 'rule-form' }, h('label', { for: 'rule-id' }, 'Id'), idInput, sql.node, verdict, actions.node, options.node, h('div', { class: 'toolbar' }, save));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const { rule: r, error } = build();
    if (error) { flag(error.startsWith('Actions') ? 'actions' : 'options'); verdict.replaceChildren(verdictNode(false, error, undefined, true)); return; }
    const answer = id ? await api('PUT', `/rules/${encodeURIComponent(id)}`, r) : await api('POST', '/rules', r);
    if (answer.ok) location.hash = `#/rule/${encodeURIComponent(r.id)}`;
    else verdict.replaceChildren(verdictNode(false, answer.message, sql.area.value, true));
  });
  main.replaceChildren(h('h1', {}, id ? `Edit rule ${id}` : 'New rule'), form);
  (id ? sql.area : idInput).focus();
  if (id) check();
}

async function streamsPage() {
  const [streams, tables] = await Promise.all([api('GET', '/streams'), api('GET', '/tables')]);
  const list = h('ul', {});
  for (const [kind, names] of [['stream', streams.json ?? []], ['table', tables.json ?? []]]) {
    for (const name of names) {
      list.append(h('li', {}, `${kind} `, h('button', { onclick: () => edit(kind, name) }, `Edit ${name}`), ' ',
        h('button', { class: 'danger', onclick: async () => { if (!confirm(`Drop ${kind} ${name}?`)) return; const a = await api('DELETE', `/${kind}s/${encodeURIComponent(name)}`); announce(a.message, !a.ok); streamsPage(); } }, 'Drop')));
    }
  }
  const sql = editor('stream-sql', 'CREATE STREAM or CREATE TABLE statement', 'CREATE STREAM s (n bigint) WITH (DATASOURCE="topic/in", FORMAT="json")', 'sql');
  const verdict = h('div', { 'aria-live': 'polite' });
  let editing = null;
  async function edit(kind, name) {
    const got = await api('GET', `/${kind}s/${encodeURIComponent(name)}`);
    if (got.ok) { sql.area.value = got.json.Statement; sql.area.dispatchEvent(new Event('input')); editing = { kind, name }; sql.area.focus(); }
  }
  let seq = 0;
  const check = async () => {
    const mine = ++seq;
    const answer = await api('POST', '/streams/validate', { sql: sql.area.value });
    if (mine !== seq) return;
    const where = answer.ok ? null : position(answer.text);
    sql.mark(where ? where.line : 0);
    verdict.replaceChildren(verdictNode(answer.ok, answer.ok ? `valid · ${answer.json.kind} ${answer.json.name}` : answer.text, sql.area.value));
  };
  sql.area.addEventListener('input', debounce(check, 400));
  const form = h('form', { id: 'stream-form' }, sql.node, verdict, h('div', { class: 'toolbar' }, h('button', { type: 'submit' }, 'Save')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const table = /^\s*create\s+table/i.test(sql.area.value);
    const kind = table ? 'table' : 'stream';
    const answer = editing && editing.kind === kind
      ? await api('PUT', `/${kind}s/${encodeURIComponent(editing.name)}`, { sql: sql.area.value })
      : await api('POST', `/${kind}s`, { sql: sql.area.value });
    announce(answer.message, !answer.ok);
    if (answer.ok) streamsPage();
  });
  main.replaceChildren(h('h1', {}, 'Streams and tables'), list, h('h2', {}, 'Create or edit'), form);
}

// A file's bytes as base64 (what the upload's JSON body carries).
function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function pluginsPage() {
  const [plugins, exported] = await Promise.all([api('GET', '/plugins/sinks'), api('POST', '/ruleset/export')]);
  const users = (name) => Object.entries(exported.json?.rules ?? {}).filter(([, text]) => {
    try { return (JSON.parse(text).actions ?? []).some((a) => Object.keys(a).some((k) => k.toLowerCase() === name.toLowerCase())); } catch { return false; }
  }).map(([id]) => id);
  const sections = (plugins.json ?? []).map((name) => {
    const details = h('div', {}, h('p', { class: 'note' }, 'loading…'));
    api('GET', `/plugins/sinks/${encodeURIComponent(name)}`).then((d) => {
      const j = d.json ?? {};
      details.replaceChildren(h('dl', { class: 'kv' },
        h('dt', {}, 'Version'), h('dd', { class: 'plugin-version' }, j.version ?? '—'),
        h('dt', {}, 'Content hash'), h('dd', {}, j.hash ?? '—'),
        h('dt', {}, 'Installed from'), h('dd', {}, j.source ?? '—'),
        h('dt', {}, 'Rules using it'), h('dd', {}, ...users(name).map((id) => h('a', { href: `#/rule/${encodeURIComponent(id)}` }, id, ' ')))),
      h('h3', {}, 'oort sink inspect'), h('pre', {}, j.inspect ?? '—'));
    });
    return h('section', { 'data-plugin': name }, h('h2', {}, name), details);
  });
  const name = h('input', { type: 'text', id: 'plugin-name' });
  const wasm = h('input', { type: 'file', id: 'plugin-wasm', accept: '.wasm,application/wasm' });
  const manifest = h('input', { type: 'file', id: 'plugin-manifest', accept: '.json,application/json' });
  const file = h('input', { type: 'text', id: 'plugin-file', placeholder: 'file:///path/on/the/server/Sink.wasm' });
  const result = h('div', { id: 'upload-result', 'aria-live': 'polite' });
  // The name defaults to the component's file name.
  wasm.addEventListener('change', () => { if (!name.value.trim() && wasm.files[0]) name.value = wasm.files[0].name.replace(/\.wasm$/i, ''); });
  const form = h('form', { id: 'plugin-form' },
    h('label', { for: 'plugin-wasm' }, 'Component from this computer (.wasm)'), wasm,
    h('label', { for: 'plugin-manifest' }, 'Its manifest, if the sink has one (.json)'), manifest,
    h('label', { for: 'plugin-name' }, 'Name'), name,
    h('details', {}, h('summary', {}, 'Or install from a path on the server'),
      h('label', { for: 'plugin-file' }, 'Component on the server (its manifest beside it as <name>.json)'), file),
    h('div', { class: 'toolbar' }, h('button', { type: 'submit' }, 'Install or update')), result);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const sink = name.value.trim();
    let answer;
    if (wasm.files[0]) {
      result.replaceChildren(h('p', { class: 'note' }, 'uploading…'));
      const body = { wasm: await base64Of(wasm.files[0]), filename: wasm.files[0].name };
      if (manifest.files[0]) body.manifest = await manifest.files[0].text();
      answer = await api('POST', `/plugins/sinks/${encodeURIComponent(sink)}/upload`, body);
    } else {
      result.replaceChildren(h('p', { class: 'note' }, 'installing…'));
      answer = await api('POST', '/plugins/sinks', { name: sink, file: file.value.trim() });
    }
    if (!answer.ok || !answer.json) { result.replaceChildren(h('p', { class: answer.ok ? 'note' : 'error' }, answer.message)); return; }
    const j = answer.json;
    result.replaceChildren(h('p', {}, `${j.message} New version ${j.version}.`), h('ul', {},
      ...j.reloaded.map((r) => h('li', { 'data-reloaded': r.rule }, `✔ ${r.rule}: the new build took over (${r.instances} instance(s), version ${r.version})`)),
      ...j.refused.map((r) => h('li', { 'data-refused': r.rule, class: 'error' }, `✖ ${r.rule}: kept the running build: ${r.reason}`)),
      ...j.unchanged.map((r) => h('li', {}, `= ${r}: already runs this build`))));
  });
  main.replaceChildren(h('h1', {}, 'Sink plugins'), ...sections, h('h2', {}, 'Install or update a sink'), form);
}

// ---- routing ----

async function route() {
  leave.abort();
  leave = new AbortController();
  const [, page, arg] = /^#\/([^/]*)\/?(.*)$/.exec(location.hash) ?? [null, 'rules', ''];
  const id = decodeURIComponent(arg ?? '');
  try {
    if (page === 'rule' && id) await rulePage(leave.signal, id);
    else if (page === 'new') await ruleEditor(null);
    else if (page === 'edit' && id) await ruleEditor(id);
    else if (page === 'streams') await streamsPage();
    else if (page === 'plugins') await pluginsPage();
    else await rulesPage(leave.signal);
  } catch (error) {
    if (error instanceof NoToken) { noToken(); return; }
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The console could not load this page: ${error.message}`));
  }
}

window.addEventListener('hashchange', route);
route();
