// DOM helpers shared by every page: element builder (text only, never HTML strings), forms with
// labelled fields, busy buttons, error display from API errors, money and dates, SVG bar charts.

import { ApiError } from './api.js';

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let ids = 0;
/** A labelled input: `field('Amount', {name: 'amount', type: 'number', required: true})`. */
export function field(label, attrs = {}, hint) {
  const id = attrs.id || `f${++ids}`;
  const hintId = hint ? `${id}-hint` : null;
  const input = attrs.options
    ? h('select', { id, name: attrs.name, required: attrs.required },
      attrs.options.map(([v, t]) => h('option', { value: v, selected: attrs.value === v }, t)))
    : h('input', { id, 'aria-describedby': hintId, ...attrs });
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', { id: hintId, class: 'muted' }, hint) : null);
}

export function setMain(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children);
  return main;
}

export function announce(text) {
  const s = document.getElementById('status');
  if (s) s.textContent = text;
}

const DECIMALS = 2;
/** Minor units → "IDR 1,500.00" in the platform currency. */
export function money(minor, currency = 'IDR') {
  const n = Number(minor || 0) / 10 ** DECIMALS;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency, minimumFractionDigits: DECIMALS, maximumFractionDigits: DECIMALS }).format(n);
  } catch {
    return `${currency} ${n.toFixed(DECIMALS)}`;
  }
}

/** "1,500.50" typed by a person → minor units (integer); NaN when not a positive amount. */
export function toMinor(text) {
  const t = String(text).replace(/[\s,]/g, '');
  if (!/^\d+(\.\d{1,2})?$/.test(t)) return NaN;
  const [whole, frac = ''] = t.split('.');
  return Number(whole) * 100 + Number((frac + '00').slice(0, 2));
}

export function amountField(label = 'Amount', name = 'amount') {
  return field(label, { name, inputmode: 'decimal', required: true, autocomplete: 'off', pattern: '[0-9,. ]+' }, 'In the platform currency, e.g. 150000.00');
}

export function when(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function badge(status) { return h('span', { class: `badge ${status}` }, String(status).replace(/_/g, ' ')); }

/** A message box for an error (API error code and message, the field named). */
export function errorBox(err) {
  if (err instanceof ApiError) {
    const what = err.field ? ` (${err.field})` : '';
    return h('div', { class: 'error', role: 'alert' }, `${err.message}${what}`, h('small', { class: 'muted' }, ` [${err.code}]`));
  }
  return h('div', { class: 'error', role: 'alert' }, String(err && err.message ? err.message : err));
}

export function okBox(text) { return h('div', { class: 'ok', role: 'status' }, text); }

/**
 * Wires a form: on submit, disables its buttons, shows progress and the API's error, and marks the
 * named field invalid. A second submit while the first runs is ignored.
 */
export function onSubmit(form, handler) {
  const out = h('div', { class: 'form-result', 'aria-live': 'polite' });
  form.append(out);
  let running = false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (running) return;
    running = true;
    const buttons = [...form.querySelectorAll('button')];
    buttons.forEach((b) => { b.disabled = true; });
    form.setAttribute('aria-busy', 'true');
    out.replaceChildren();
    form.querySelectorAll('[aria-invalid]').forEach((i) => i.removeAttribute('aria-invalid'));
    try {
      const result = await handler(new FormData(form), out);
      if (typeof result === 'string') out.replaceChildren(okBox(result));
      else if (result instanceof Node) out.replaceChildren(result);
    } catch (err) {
      out.replaceChildren(errorBox(err));
      const input = err && err.field ? form.querySelector(`[name="${CSS.escape(err.field)}"]`) : null;
      if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    } finally {
      running = false;
      buttons.forEach((b) => { b.disabled = false; });
      form.removeAttribute('aria-busy');
    }
  });
  return out;
}

/** Loads data for a page section, showing the error instead when it fails. */
export async function section(container, loader) {
  container.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await loader();
    container.replaceChildren(...[content].flat());
  } catch (err) {
    container.replaceChildren(errorBox(err));
  }
  return container;
}

export function table(columns, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num amount' : null }, c.value(r))))))));
}

/** Rows → CSV download (quoted, formula-safe). */
export function downloadCsv(filename, header, rows) {
  const cell = (v) => {
    let s = v === null || v === undefined ? '' : String(v);
    if (/^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s)) s = `'${s}`;
    return `"${s.replace(/"/g, '""')}"`;
  };
  const text = [header, ...rows].map((r) => r.map(cell).join(',')).join('\r\n');
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = h('a', { href: url, download: filename, class: 'hidden' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * A grouped bar chart of a statistics series response (`periods[]`, `series[]{name, points[]}`),
 * drawn as SVG; `value` picks the number of a point. A table with the same figures follows for
 * screen readers.
 */
export function barChart(title, stats, value = (p) => p.amount, fmt = money) {
  const labels = stats.periods.map((p) => p.label.slice(5) || p.label);
  const series = stats.series.slice(0, 4);
  const max = Math.max(1, ...series.flatMap((se) => se.points.map(value)));
  const W = 600, H = 220, top = 10, bottom = 24, left = 8;
  const band = (W - left) / labels.length;
  const bw = Math.max(2, (band - 6) / Math.max(1, series.length));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  svg.append(s('line', { x1: left, x2: W, y1: H - bottom, y2: H - bottom, class: 'axis' }));
  labels.forEach((l, i) => {
    svg.append(s('text', { x: left + i * band + band / 2, y: H - 8, 'text-anchor': 'middle' }, l));
    series.forEach((se, j) => {
      const v = value(se.points[i] || {}) || 0;
      const bh = ((H - top - bottom) * v) / max;
      const rect = s('rect', { x: left + i * band + 3 + j * bw, y: H - bottom - bh, width: bw - 1, height: Math.max(0, bh), class: `bar s${j}` });
      rect.append(s('title', {}, `${se.name} ${stats.periods[i].label}: ${fmt(v, se.currency)}`));
      svg.append(rect);
    });
  });
  const legend = h('div', { class: 'legend' }, series.map((se, j) => h('span', {}, h('i', { class: `s${j}` }), se.name)));
  const details = h('details', {}, h('summary', {}, 'Figures as a table'),
    table([{ label: 'Month', value: (r) => r.label }, ...series.map((se, j) => ({ label: se.name, num: true, value: (r) => fmt(value(se.points[r.i] || {}) || 0, se.currency) }))],
      stats.periods.map((p, i) => ({ label: p.label, i }))));
  return h('figure', { class: 'panel chart' }, h('figcaption', {}, h('strong', {}, title)), svg, legend, details);
}
