// The Sluice dashboard. It keeps no state of its own: the list page reads the list once, then
// applies the changes the server pushes (Server-Sent Events); a rollout's page redraws from each
// pushed snapshot. Actions ask for confirmation in a <dialog>, then POST to the server, which
// runs the plugin's own commands.

const root = document.querySelector('meta[name="sluice-root"]').content;
const all = document.querySelector('meta[name="sluice-all"]').content === 'true';
const main = document.getElementById('main');
const live = document.getElementById('live');
const toast = document.getElementById('toast');
const dialog = document.getElementById('confirm');
const form = document.getElementById('confirm-form');

// ---- DOM helpers -------------------------------------------------------------------------------

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** An HTML element: `props` are attributes, except class, text and on* listeners. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  return append(el, children);
}

/** An SVG element. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  return append(el, children);
}

const badge = (word, title) => h('span', { class: `badge s-${word}`, title: title || null }, word);
const roleTags = (roles) => roles.map((r) => h('span', { class: `role role-${r}` }, r));
const dash = (v) => (v == null || v === '' ? '–' : v);
const enc = encodeURIComponent;
const pageUrl = (ns, name) => `${root}rollouts/${enc(ns)}/${enc(name)}`;
const apiUrl = (ns, name) => `${root}api/rollouts/${enc(ns)}/${enc(name)}`;
const time = (t) => (t ? new Date(t).toLocaleTimeString() : '–');

function setLive(on, text) {
  live.textContent = text;
  live.className = `live ${on ? 'on' : 'off'}`;
}

let toastTimer;
function say(text, error) {
  toast.setAttribute('role', error ? 'alert' : 'status');
  toast.className = error ? 'toast error' : 'toast';
  toast.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.textContent = ''; }, error ? 15000 : 6000);
}

/** Replaces `old` with `neu`, keeping the keyboard focus on the same control. */
function swap(old, neu) {
  const a = document.activeElement;
  const sel = old.contains(a) && (a.dataset.action ? `[data-action="${a.dataset.action}"]` : a.tagName.toLowerCase());
  old.replaceWith(neu);
  if (sel) (neu.querySelector(`${sel}:not(:disabled)`) || neu.querySelector('a'))?.focus();
}

// ---- actions -----------------------------------------------------------------------------------

const ACTIONS = {
  promote: { label: 'Promote', text: (n) => `Let rollout ${n} continue past its pause.` },
  'promote-full': { label: 'Promote full', danger: true, text: (n) => `Skip every remaining step, pause and analysis of ${n}: its new version becomes stable now.` },
  abort: { label: 'Abort', danger: true, text: (n) => `Abort the update of ${n}: traffic and replicas go back to the stable version.` },
  retry: { label: 'Retry', text: (n) => `Start the aborted update of ${n} again from its first step.` },
  restart: { label: 'Restart', text: (n) => `Restart every pod of ${n}, a few at a time.` },
  'set-image': { label: 'Set image…', text: (n) => `Change a container's image in the pod template of ${n}: this starts an update.` },
};

/** Whether `action` makes sense for the rollout now (the server decides in the end). */
function applies(action, r) {
  const moving = r.status === 'Paused' || r.status === 'Progressing';
  switch (action) {
    case 'promote': return r.paused;
    case 'promote-full': return !!r.strategy && r.status !== 'Healthy' && !r.aborted;
    case 'abort': return moving && !r.aborted;
    case 'retry': return r.aborted;
    default: return true;
  }
}

let pending = null;

/** Opens the confirmation dialog for `action` on the rollout `r`. */
function confirmAction(action, r, containers) {
  const a = ACTIONS[action];
  const label = a.label.replace('…', '');
  document.getElementById('confirm-title').textContent = `${label}: ${r.name}?`;
  document.getElementById('confirm-text').textContent = a.text(r.name);
  const fields = document.getElementById('confirm-fields');
  fields.replaceChildren();
  if (action === 'set-image') {
    const names = containers && containers.length ? containers : ['*'];
    fields.append(
      h('label', { for: 'f-container' }, 'Container'),
      h('select', { id: 'f-container', name: 'container' }, names.map((n) => h('option', { value: n }, n))),
      h('label', { for: 'f-image' }, 'Image'),
      h('input', { id: 'f-image', name: 'image', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', value: r.images[0]?.image || '' }),
    );
  }
  const ok = document.getElementById('confirm-ok');
  ok.textContent = label;
  pending = { action, r };
  dialog.returnValue = '';
  dialog.showModal();
  (fields.querySelector('input') || ok).focus();
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  // Enter in a field submits without a submitter: that means "confirm".
  const ok = !e.submitter || e.submitter.value === 'ok';
  if (ok && !form.reportValidity()) return;
  dialog.close(ok ? 'ok' : 'cancel');
});

dialog.addEventListener('close', () => {
  const p = pending;
  pending = null;
  if (!p || dialog.returnValue !== 'ok') return;
  const body = p.action === 'set-image'
    ? { container: form.elements.container.value, image: form.elements.image.value.trim() }
    : {};
  act(p.action, p.r, body);
});

async function act(action, r, body) {
  try {
    const res = await fetch(`${apiUrl(r.namespace, r.name)}/actions/${action}`, {
      method: 'POST',
      headers: { 'X-Sluice-Dashboard': '1', 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (res.ok) say(data.message || 'done');
    else say(data.error || `${res.status} ${res.statusText}`, true);
  } catch (e) {
    say(`the request failed: ${e.message}`, true);
  }
}

function actionButton(action, r, containers, small) {
  const a = ACTIONS[action];
  return h('button', {
    type: 'button',
    class: [small && 'small', a.danger && 'danger'].filter(Boolean).join(' ') || null,
    'data-action': action,
    'aria-label': small ? `${a.label.replace('…', '')} ${r.name}` : null,
    disabled: !applies(action, r),
    onclick: () => confirmAction(action, r, containers),
  }, a.label);
}

// ---- shared views --------------------------------------------------------------------------------

function weights(r) {
  if (r.canaryWeight != null) {
    const fill = h('span');
    fill.style.width = `${Math.max(0, Math.min(100, r.canaryWeight))}%`;
    return [h('span', { class: 'bar', 'aria-hidden': 'true' }, fill), `canary ${r.canaryWeight} · stable ${r.stableWeight}`];
  }
  return r.strategy === 'Canary' ? 'stable 100' : '–';
}

function images(list) {
  return h('ul', { class: 'images' }, list.map((i) => h('li', {}, h('code', {}, i.image), roleTags(i.roles))));
}

// ---- the list page -------------------------------------------------------------------------------

function listPage() {
  document.title = 'Rollouts · Sluice';
  const rows = new Map(); // key → row
  const trs = new Map(); // key → <tr>
  // NUL sorts first, so keys sort as (namespace, name) pairs, as the server sends them.
  const key = (ns, name) => `${ns}\u0000${name}`;
  const filter = h('input', { type: 'search', placeholder: 'Filter by name, status, image…', 'aria-label': 'Filter rollouts', oninput: () => refilter() });
  const count = h('span', { class: 'muted' });
  const problem = h('div', { class: 'problem', role: 'alert', hidden: true });
  const cols = [all && 'Namespace', 'Name', 'Status', 'Strategy', 'Step', 'Weights', 'Images', 'Actions'].filter(Boolean);
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true });
  main.replaceChildren(
    h('h1', {}, 'Rollouts'),
    h('div', { class: 'toolbar' }, filter, count),
    problem,
    h('table', { id: 'rollouts' }, h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))), tbody),
    empty,
  );

  // Rows drawn at once on a full render; the rest follow right after the first paint.
  const FIRST_ROWS = 50;
  let rest = null;

  function rowEl(r) {
    return h('tr', { 'data-namespace': r.namespace, 'data-name': r.name, 'data-status': r.status },
      all && h('td', {}, r.namespace),
      h('td', {}, h('a', { href: pageUrl(r.namespace, r.name) }, r.name)),
      h('td', {}, badge(r.status, r.message)),
      h('td', {}, dash(r.strategy)),
      h('td', { class: 'num' }, dash(r.step)),
      h('td', { class: 'weights' }, weights(r)),
      h('td', {}, images(r.images)),
      h('td', {}, ['promote', 'abort', 'retry'].filter((a) => applies(a, r)).map((a) => [actionButton(a, r, null, true), ' '])),
    );
  }

  const haystack = (r) => [r.namespace, r.name, r.status, r.strategy, ...r.images.map((i) => i.image)].join(' ').toLowerCase();
  function refilter() {
    const q = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const [k, tr] of trs) {
      tr.hidden = !!q && !haystack(rows.get(k)).includes(q);
      if (!tr.hidden) shown += 1;
    }
    count.textContent = q ? `${shown} of ${rows.size} rollouts` : `${rows.size} rollouts`;
  }

  function apply(d) {
    if (d.full) rows.clear();
    for (const [ns, name] of d.gone) rows.delete(key(ns, name));
    for (const r of d.rows) rows.set(key(r.namespace, r.name), r);
    problem.hidden = !d.problem;
    problem.textContent = d.problem || '';
    if (d.full) {
      trs.clear();
      const first = document.createDocumentFragment();
      rest = document.createDocumentFragment();
      for (const k of [...rows.keys()].sort()) {
        const tr = rowEl(rows.get(k));
        trs.set(k, tr);
        (trs.size <= FIRST_ROWS ? first : rest).append(tr);
      }
      tbody.replaceChildren(first);
      performance.mark('sluice-list-first-rows');
      // The first screenful is painted before the rest of a long list is laid out.
      const later = rest;
      requestAnimationFrame(() => setTimeout(() => {
        if (later !== rest) return; // a newer full list replaced it
        rest = null;
        tbody.append(later);
        performance.mark('sluice-list-rendered');
      }));
    } else {
      for (const [ns, name] of d.gone) {
        const k = key(ns, name);
        trs.get(k)?.remove();
        trs.delete(k);
      }
      for (const r of d.rows) {
        const k = key(r.namespace, r.name);
        const tr = rowEl(r);
        const old = trs.get(k);
        if (old) swap(old, tr);
        else {
          const next = [...trs.keys()].filter((o) => o > k).sort()[0];
          // `before` works whether the next row is shown yet or still waits in `rest`.
          if (next) trs.get(next).before(tr);
          else (rest || tbody).append(tr);
        }
        trs.set(k, tr);
      }
    }
    refilter();
    empty.hidden = rows.size > 0;
    empty.textContent = d.ready ? 'No rollouts here.' : 'Reading the cluster…';
  }

  (async () => {
    let seq = 0;
    try {
      const res = await fetch(`${root}api/rollouts`);
      const d = await res.json();
      apply(d);
      seq = d.seq;
    } catch (e) {
      problem.hidden = false;
      problem.textContent = `Reading the list failed: ${e.message}`;
    }
    const es = new EventSource(`${root}api/events?since=${seq}`);
    es.addEventListener('delta', (e) => apply(JSON.parse(e.data)));
    es.onopen = () => setLive(true, 'live');
    es.onerror = () => setLive(false, 'reconnecting…');
  })();
}

// ---- the rollout page ----------------------------------------------------------------------------

/** A measurement's value as a number: plain, or the first number of a JSON array. */
function numeric(value) {
  if (value == null) return NaN;
  const n = Number(value);
  if (value.trim() !== '' && Number.isFinite(n)) return n;
  try {
    const parsed = JSON.parse(value);
    const first = Array.isArray(parsed) ? parsed.find((x) => typeof x === 'number') : parsed;
    return typeof first === 'number' ? first : NaN;
  } catch {
    return NaN;
  }
}

/** `result >= 0.95`-like conditions, as a line to draw. */
function threshold(condition, kind) {
  const m = /\bresult(?:\[0\])?\s*(<=|>=|<|>|==)\s*(-?\d+(?:\.\d+)?)\s*$/.exec(condition || '');
  return m ? { value: Number(m[2]), kind, text: `${kind === 'ok' ? 'success' : 'failure'} ${m[1]} ${m[2]}` } : null;
}

/** The measurements of a metric over time, as an inline SVG chart. */
function plot(m) {
  const W = 440, H = 150, L = 46, R = 10, T = 10, B = 22;
  const pts = m.measurements.map((p, i) => ({ p, i, v: numeric(p.value), t: p.at ? Date.parse(p.at) : NaN }));
  const last = pts[pts.length - 1];
  const label = pts.length
    ? `${m.name}: ${pts.length} measurements, the last ${last.p.value ?? 'without a value'} (${last.p.phase})`
    : `${m.name}: no measurements yet`;
  const chart = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
  chart.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
  if (!pts.length) {
    chart.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no measurements yet'));
    return chart;
  }
  const lines = [threshold(m.successCondition, 'ok'), threshold(m.failureCondition, 'bad')].filter(Boolean);
  const values = pts.filter((x) => Number.isFinite(x.v)).map((x) => x.v).concat(lines.map((l) => l.value));
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (hi === lo) { hi += Math.abs(hi) * 0.1 || 1; lo -= Math.abs(lo) * 0.1 || 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const byTime = pts.every((x) => Number.isFinite(x.t)) && pts[pts.length - 1].t > pts[0].t;
  const t0 = byTime ? pts[0].t : 0;
  const span = byTime ? pts[pts.length - 1].t - t0 : Math.max(1, pts.length - 1);
  const x = (q) => L + 8 + ((byTime ? q.t - t0 : q.i) / span) * (W - L - R - 16) || L + (W - L - R) / 2;
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const fmt = (v) => (Math.abs(v) >= 1000 || Number.isInteger(v) ? String(Math.round(v)) : v.toPrecision(3));
  chart.append(
    s('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, fmt(hi)),
    s('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, fmt(lo)),
    s('text', { x: L, y: H - 6 }, time(pts[0].p.at)),
    s('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, time(last.p.at)),
  );
  for (const l of lines) {
    chart.append(s('line', { class: `threshold ${l.kind}`, x1: L, x2: W - R, y1: y(l.value), y2: y(l.value) }, s('title', {}, l.text)));
  }
  const numericPts = pts.filter((q) => Number.isFinite(q.v));
  if (numericPts.length > 1) {
    chart.append(s('polyline', { class: 'line', points: numericPts.map((q) => `${x(q).toFixed(1)},${y(q.v).toFixed(1)}`).join(' ') }));
  }
  for (const q of pts) {
    const cy = Number.isFinite(q.v) ? y(q.v) : H - B - 4;
    chart.append(s('circle', { class: `pt pt-${q.p.phase}`, cx: x(q).toFixed(1), cy: cy.toFixed(1), r: 4 },
      s('title', {}, `${time(q.p.at)}: ${q.p.value ?? '(no value)'}, ${q.p.phase}${q.p.message ? ` (${q.p.message})` : ''}`)));
  }
  return chart;
}

function metricView(runName, m) {
  const c = m.counts;
  const conds = [
    m.successCondition && h('li', {}, 'Success when ', h('code', {}, m.successCondition)),
    m.failureCondition && h('li', {}, 'Failure when ', h('code', {}, m.failureCondition)),
  ].filter(Boolean);
  return h('div', { class: 'metric', 'data-metric': m.name },
    plot(m),
    h('div', {},
      h('h5', {}, m.name, ' ', badge(m.phase)),
      h('ul', { class: 'conds' }, conds.length ? conds : h('li', { class: 'muted' }, 'No condition: a measurement that does not error succeeds')),
      h('p', { class: 'muted' }, `${c.successful} successful, ${c.failed} failed, ${c.inconclusive} inconclusive, ${c.error} errors`),
      m.message && h('p', {}, m.message),
      h('details', { 'data-id': `${runName}/${m.name}` },
        h('summary', {}, `Measurements (${m.measurements.length})`),
        h('table', {}, h('thead', {}, h('tr', {}, ['Time', 'Value', 'Phase', 'Message'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, m.measurements.map((p) => h('tr', {}, h('td', {}, time(p.at)), h('td', {}, h('code', {}, dash(p.value))), h('td', {}, p.phase), h('td', {}, dash(p.message)))))),
      ),
    ),
  );
}

function runView(summary, run) {
  return h('article', { class: 'run', 'data-run': summary.name },
    h('h4', {}, 'AnalysisRun ', h('code', {}, summary.name), ' ', badge(summary.phase)),
    run?.message && h('p', { class: 'muted' }, run.message),
    run ? run.metrics.map((m) => metricView(run.name, m)) : null,
  );
}

function revisionView(rev, d) {
  const sets = rev.replicaSets;
  return h('section', { class: 'rev', 'aria-label': `Revision ${rev.revision}` },
    h('h3', {}, `Revision ${rev.revision}`),
    sets.length > 0 && h('table', { class: 'sets' },
      h('thead', {}, h('tr', {}, ['ReplicaSet', 'Status', 'Replicas', 'Images'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, sets.map((rs) => [
        h('tr', { 'data-replicaset': rs.name },
          h('td', {}, h('code', {}, rs.name), roleTags(rs.roles)),
          h('td', {}, badge(rs.status)),
          h('td', { class: 'num' }, `${rs.available}/${rs.replicas} available`),
          h('td', {}, rs.images.map((i) => h('div', {}, h('code', {}, i))))),
        rs.pods.length > 0 && h('tr', { class: 'sub' }, h('td', { colspan: 4 },
          h('ul', { class: 'pods', 'aria-label': `Pods of ${rs.name}` }, rs.pods.map((p) =>
            h('li', { 'data-pod': p.name }, h('code', {}, p.name), ' ', p.status, ` · ready ${p.ready}`, p.restarts ? ` · ${p.restarts} restarts` : ''))))),
      ])),
    ),
    rev.analysisRuns.map((summary) => runView(summary, d.analysisRuns.find((r) => r.name === summary.name))),
  );
}

function summaryView(r) {
  const item = (t, ...dd) => [h('dt', {}, t), h('dd', {}, ...dd)];
  const rep = r.replicas;
  return [
    item('Status', badge(r.status), r.message ? ` ${r.message}` : ''),
    item('Strategy', dash(r.strategy)),
    r.strategy === 'Canary' && item('Step', dash(r.step)),
    r.strategy === 'Canary' && item('Set weight', dash(r.setWeight)),
    r.strategy === 'Canary' && item('Actual weight', dash(r.actualWeight)),
    r.strategy === 'Canary' && item('Traffic', h('span', { class: 'weights' }, weights(r))),
    item('Images', r.images.length ? images(r.images) : '–'),
    item('Replicas', `${rep.desired} desired · ${rep.current} current · ${rep.updated} updated · ${rep.ready} ready · ${rep.available} available`),
  ].flat().filter(Boolean);
}

function detailPage(ns, name) {
  document.title = `${name} · Sluice`;
  const problem = h('div', { class: 'problem', role: 'alert', hidden: true });
  const summary = h('dl', { class: 'summary' });
  const actions = h('div', { class: 'toolbar', role: 'group', 'aria-labelledby': 'actions-h' });
  const revisions = h('div', { id: 'revisions' });
  main.replaceChildren(
    h('p', {}, h('a', { href: root }, '← All rollouts')),
    h('h1', {}, name, all ? h('span', { class: 'muted' }, ` (${ns})`) : ''),
    problem, summary,
    h('h2', { id: 'actions-h' }, 'Actions'), actions,
    h('h2', {}, 'Revisions'), revisions,
  );
  let current = null;
  const buttons = Object.keys(ACTIONS).map((action) => h('button', {
    type: 'button', 'data-action': action, disabled: true,
    class: ACTIONS[action].danger ? 'danger' : null,
    onclick: () => current && confirmAction(action, current.row, current.containers),
  }, ACTIONS[action].label));
  actions.append(...buttons);
  const open = new Set();

  function render(d) {
    current = d;
    for (const b of buttons) b.disabled = !applies(b.dataset.action, d.row);
    summary.replaceChildren(...summaryView(d.row));
    for (const el of revisions.querySelectorAll('details[data-id]')) {
      if (el.open) open.add(el.dataset.id); else open.delete(el.dataset.id);
    }
    const focused = document.activeElement?.closest?.('details[data-id]')?.dataset.id;
    revisions.replaceChildren(...d.revisions.map((rev) => revisionView(rev, d)));
    for (const el of revisions.querySelectorAll('details[data-id]')) {
      el.open = open.has(el.dataset.id);
      if (el.dataset.id === focused) el.querySelector('summary').focus();
    }
    if (!d.revisions.length) revisions.append(h('p', { class: 'muted' }, 'No ReplicaSets yet.'));
  }

  function stop(text) {
    problem.textContent = text;
    problem.hidden = false;
    for (const b of buttons) b.disabled = true;
  }

  const es = new EventSource(`${apiUrl(ns, name)}/events`);
  es.addEventListener('detail', (e) => { problem.hidden = true; render(JSON.parse(e.data)); });
  es.addEventListener('deleted', () => { es.close(); setLive(false, 'deleted'); stop(`Rollout ${name} was deleted.`); });
  es.addEventListener('problem', (e) => { es.close(); setLive(false, 'stopped'); stop(JSON.parse(e.data).error); });
  es.onopen = () => setLive(true, 'live');
  es.onerror = async () => {
    setLive(false, 'reconnecting…');
    if (es.readyState !== EventSource.CLOSED) return;
    // Refused before any event (a namespace not shown, say): the JSON answer says why.
    const res = await fetch(apiUrl(ns, name)).catch(() => null);
    const data = res && !res.ok ? await res.json().catch(() => ({})) : {};
    setLive(false, 'stopped');
    stop(data.error || 'The dashboard server cannot be reached.');
  };
}

// ---- routing -----------------------------------------------------------------------------------

const path = location.pathname.startsWith(root) ? location.pathname.slice(root.length) : '';
const route = /^rollouts\/([^/]+)\/([^/]+)\/?$/.exec(path);
if (route) detailPage(decodeURIComponent(route[1]), decodeURIComponent(route[2]));
else listPage();
