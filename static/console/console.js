// DeltaGlider Proxy console: plain DOM, no dependencies. Every value from the
// server goes through textContent (never innerHTML): keys are user data.
'use strict';

const $ = (sel) => document.querySelector(sel);
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
function human(n) {
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${UNITS[i]}`;
}
const pct = (s) => `${(s * 100).toFixed(1)} %`;

/** A number cell: readable text, exact value in data-value and the tooltip. */
function num(field, value, text) {
  return el('td', { 'data-field': field, 'data-value': value, title: String(value) }, text === undefined ? String(value) : text);
}

async function api(path, opts = {}) {
  const headers = { accept: 'application/json' };
  if (opts.method === 'POST') {
    headers['content-type'] = 'application/json';
    headers['x-deltaglider-console'] = '1';
  }
  const r = await fetch(path, { ...opts, headers, credentials: 'same-origin' });
  if (r.status === 401 && path !== '/_/api/login') {
    showSignin();
    throw new Error('signed out');
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function showSignin() {
  stopLive();
  $('#nav').hidden = true;
  $('#view').hidden = true;
  $('#signin').hidden = false;
}

function view(...children) {
  const v = $('#view');
  v.replaceChildren(...children);
  v.hidden = false;
  $('#signin').hidden = true;
  $('#nav').hidden = false;
}

/** Horizontal bars: logical vs stored bytes per row, one scale. */
function chart(rows) {
  const max = Math.max(1, ...rows.map((r) => Math.max(r.logical_bytes, r.stored_bytes)));
  const labelW = 180;
  const barW = 620;
  const rowH = 34;
  const height = rows.length * rowH + 10;
  const s = svg('svg', { width: labelW + barW + 140, height, viewBox: `0 0 ${labelW + barW + 140} ${height}`, role: 'img', 'aria-label': 'logical and stored bytes per bucket' });
  rows.forEach((r, i) => {
    const y = i * rowH + 6;
    s.append(svg('text', { x: 0, y: y + 18, 'font-size': 13 }, r.bucket));
    const lw = Math.max(1, (r.logical_bytes / max) * barW);
    const sw = Math.max(1, (r.stored_bytes / max) * barW);
    s.append(svg('rect', { x: labelW, y, width: lw, height: 12, fill: '#9aa7b8' }));
    s.append(svg('rect', { x: labelW, y: y + 14, width: sw, height: 12, fill: '#1f7a4d' }));
    s.append(svg('text', { x: labelW + lw + 6, y: y + 10, 'font-size': 11, fill: '#5d6876' }, human(r.logical_bytes)));
    s.append(svg('text', { x: labelW + sw + 6, y: y + 24, 'font-size': 11, fill: '#1f7a4d' }, `${human(r.stored_bytes)} (${pct(r.saving)} saved)`));
  });
  const legend = el('p', { class: 'legend' }, el('i', { class: 'sw-logical' }), 'logical (as uploaded)', el('i', { class: 'sw-stored' }), 'stored (what the backend holds)');
  return el('div', { class: 'chart' }, legend, s);
}

async function bucketsPage() {
  const { buckets } = await api('/_/api/buckets');
  const tbody = el('tbody');
  for (const b of buckets) {
    tbody.append(el('tr', { 'data-bucket': b.bucket },
      el('td', {}, el('a', { href: `#/b/${encodeURIComponent(b.bucket)}` }, b.bucket)),
      num('objects', b.objects), num('logical_bytes', b.logical_bytes, human(b.logical_bytes)),
      num('stored_bytes', b.stored_bytes, human(b.stored_bytes)), num('saving', b.saving, pct(b.saving))));
  }
  const head = el('thead', {}, el('tr', {}, ...['bucket', 'objects', 'logical', 'stored', 'saving'].map((h) => el('th', {}, h))));
  view(el('h1', {}, 'Buckets'), buckets.length ? chart(buckets) : el('p', { class: 'muted' }, 'No buckets yet.'), el('h2', {}, 'Usage'), el('table', { id: 'buckets' }, head, tbody),
    el('p', { class: 'muted' }, 'Figures are kept current as objects change; several instances on one backend agree within seconds.'));
}

async function bucketPage(bucket) {
  view(el('h1', {}, bucket), el('p', { class: 'muted' }, 'Scanning the bucket…'));
  const r = await api(`/_/api/buckets/${encodeURIComponent(bucket)}/deltaspaces`);
  const summary = el('div', { class: 'summary', id: 'bucket-summary' },
    el('div', { 'data-field': 'objects', 'data-value': r.objects }, 'objects', el('b', {}, String(r.objects))),
    el('div', { 'data-field': 'logical_bytes', 'data-value': r.logical_bytes, title: String(r.logical_bytes) }, 'logical', el('b', {}, human(r.logical_bytes))),
    el('div', { 'data-field': 'stored_bytes', 'data-value': r.stored_bytes, title: String(r.stored_bytes) }, 'stored', el('b', {}, human(r.stored_bytes))),
    el('div', { 'data-field': 'saving', 'data-value': r.saving }, 'saving', el('b', {}, pct(r.saving))));
  const tbody = el('tbody');
  for (const d of r.deltaspaces) {
    const name = d.deltaspace === '' ? '(top)' : `${d.deltaspace}/`;
    const prefix = d.deltaspace === '' ? '' : `${d.deltaspace}/`;
    tbody.append(el('tr', { 'data-deltaspace': d.deltaspace },
      el('td', {}, el('a', { href: `#/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(prefix)}` }, name)),
      num('reference_bytes', d.reference_bytes, d.reference_bytes ? human(d.reference_bytes) : '–'),
      num('objects', d.objects), num('deltas', d.deltas), num('direct', d.direct),
      num('logical_bytes', d.logical_bytes, human(d.logical_bytes)), num('stored_bytes', d.stored_bytes, human(d.stored_bytes)),
      num('saving', d.saving, pct(d.saving))));
  }
  const head = el('thead', {}, el('tr', {}, ...['deltaspace', 'reference', 'objects', 'deltas', 'direct', 'logical', 'stored', 'saving'].map((h) => el('th', {}, h))));
  view(el('h1', {}, bucket), summary, el('h2', {}, 'Deltaspaces'), el('table', { id: 'deltaspaces' }, head, tbody),
    el('p', { class: 'muted' }, 'Stored bytes include each deltaspace\'s reference and the small JSON sidecars.'));
}

async function objectsPage(bucket, prefix, after) {
  const q = new URLSearchParams({ prefix });
  if (after) q.set('after', after);
  const r = await api(`/_/api/buckets/${encodeURIComponent(bucket)}/objects?${q}`);
  const tbody = el('tbody');
  for (const p of r.prefixes) {
    tbody.append(el('tr', {}, el('td', { class: 'key' }, el('a', { href: `#/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(p)}` }, p)), el('td'), el('td'), el('td'), el('td')));
  }
  for (const o of r.objects) {
    tbody.append(el('tr', { 'data-key': o.key },
      el('td', { class: 'key' }, o.key.slice(prefix.length)),
      num('size', o.size, human(o.size)), el('td', { 'data-field': 'stored_as' }, o.seeded_reference ? `${o.stored_as} (seeded the reference)` : o.stored_as),
      num('stored_size', o.stored_size, human(o.stored_size)), num('ratio', o.ratio, pct(o.ratio))));
  }
  const head = el('thead', {}, el('tr', {}, ...['key', 'size', 'stored as', 'stored', 'stored/size'].map((h) => el('th', {}, h))));
  const up = prefix ? prefix.slice(0, prefix.slice(0, -1).lastIndexOf('/') + 1) : null;
  const links = el('p', {}, el('a', { href: `#/b/${encodeURIComponent(bucket)}` }, `← ${bucket}`));
  if (up !== null && prefix) links.append(' · ', el('a', { href: `#/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(up)}` }, up || '(top)'));
  if (r.truncated) links.append(' · ', el('a', { href: `#/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(prefix)}/after/${encodeURIComponent(r.next)}` }, 'next page →'));
  view(el('h1', {}, `${bucket}/${prefix}`), links, el('table', { id: 'objects' }, head, tbody));
}

let liveTimer = null;
function stopLive() {
  if (liveTimer) clearInterval(liveTimer);
  liveTimer = null;
}

async function livePage() {
  const rate = el('b', { id: 'rate' }, '…');
  const queue = el('b', { id: 'queue' }, '…');
  const running = el('b', { id: 'running' }, '…');
  const cache = el('b', { id: 'cache' }, '…');
  const rss = el('b', { id: 'rss' }, '…');
  view(el('h1', {}, 'Live'), el('div', { class: 'summary' },
    el('div', {}, 'requests / s', rate), el('div', {}, 'codec queue', queue), el('div', {}, 'codec running', running),
    el('div', {}, 'reference cache hits', cache), el('div', {}, 'memory (RSS)', rss)),
  el('p', { class: 'muted' }, 'Refreshed every 2 seconds.'));
  let prev = null;
  const tick = async () => {
    const l = await api('/_/api/live');
    if (prev) rate.textContent = ((l.requests_total - prev.requests_total) / Math.max(0.001, (l.now - prev.now) / 1000)).toFixed(1);
    prev = l;
    queue.textContent = l.codec ? String(l.codec.queued) : 'n/a';
    running.textContent = l.codec ? String(l.codec.running) : 'n/a';
    const { hits, misses } = l.reference_cache;
    cache.textContent = hits + misses ? pct(hits / (hits + misses)) : '–';
    rss.textContent = human(l.rss_bytes);
  };
  await tick();
  liveTimer = setInterval(() => tick().catch(() => stopLive()), 2000);
}

async function route() {
  stopLive();
  const h = location.hash.replace(/^#/, '') || '/';
  let m;
  try {
    if (h === '/live') await livePage();
    else if ((m = /^\/b\/([^/]+)\/o\/([^/]*)\/after\/(.*)$/.exec(h))) await objectsPage(decodeURIComponent(m[1]), decodeURIComponent(m[2]), decodeURIComponent(m[3]));
    else if ((m = /^\/b\/([^/]+)\/o\/(.*)$/.exec(h))) await objectsPage(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
    else if ((m = /^\/b\/([^/]+)$/.exec(h))) await bucketPage(decodeURIComponent(m[1]));
    else await bucketsPage();
  } catch (err) {
    if (err.message !== 'signed out') view(el('p', { class: 'error' }, err.message));
  }
}

async function start() {
  $('#signin').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    $('#signin-error').textContent = '';
    try {
      const s = await api('/_/api/login', { method: 'POST', body: JSON.stringify({ accessKeyId: f.get('accessKeyId'), secretAccessKey: f.get('secretAccessKey') }) });
      ev.target.reset();
      $('#who').textContent = s.accessKeyId;
      await route();
    } catch (err) {
      $('#signin-error').textContent = err.message;
    }
  });
  $('#signout').addEventListener('click', async () => {
    await api('/_/api/logout', { method: 'POST', body: '{}' }).catch(() => {});
    showSignin();
  });
  window.addEventListener('hashchange', route);
  try {
    const s = await api('/_/api/session');
    $('#who').textContent = s.accessKeyId;
    await route();
  } catch {
    showSignin();
  }
}

start();
