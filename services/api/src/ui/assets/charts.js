// Hand-drawn SVG charts (no library): stacked bars and lines over per-minute series.
import { clear, fmtClock } from './common.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 720;
const H = 200;
const M = { top: 10, right: 10, bottom: 24, left: 48 };
const GRID_LINES = 4;
const X_LABELS = 6;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// A round upper bound for the axis (1, 2, 5 × 10^n).
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function frame(label, max, n, fmt) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, class: 'svgchart', preserveAspectRatio: 'xMidYMid meet' });
  const plotH = H - M.top - M.bottom;
  for (let i = 0; i <= GRID_LINES; i++) {
    const v = (max * i) / GRID_LINES;
    const y = M.top + plotH - (plotH * i) / GRID_LINES;
    svg.append(s('line', { x1: M.left, x2: W - M.right, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: M.left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v)));
  }
  return svg;
}

function xLabels(svg, minutes) {
  const n = minutes.length;
  const step = Math.max(1, Math.ceil(n / X_LABELS));
  const bw = (W - M.left - M.right) / n;
  for (let i = 0; i < n; i += step) {
    svg.append(s('text', { x: M.left + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis' }, fmtClock(minutes[i].minute)));
  }
}

function empty(container, text) {
  container.append(Object.assign(document.createElement('p'), { className: 'empty', textContent: text }));
}

// series: [{ key, label, cls }]; each minute's values are stacked bottom-up in series order.
export function stackedBars(container, minutes, series, emptyText) {
  clear(container);
  const totals = series.map((x) => minutes.reduce((a, m) => a + (m[x.key] || 0), 0));
  const stack = minutes.map((m) => series.reduce((a, x) => a + (m[x.key] || 0), 0));
  const peak = Math.max(0, ...stack);
  if (peak === 0) { empty(container, emptyText); return; }
  const peakAt = minutes[stack.indexOf(peak)].minute;
  const label = `${minutes.length} minutes: ${series.map((x, i) => `${totals[i]} ${x.label.toLowerCase()}`).join(', ')}; peak ${peak} per minute at ${fmtClock(peakAt)}.`;
  const max = niceMax(peak);
  const svg = frame(label, max, minutes.length, (v) => (Number.isInteger(v) ? v : v.toFixed(1)));
  const plotH = H - M.top - M.bottom;
  const bw = (W - M.left - M.right) / minutes.length;
  minutes.forEach((m, i) => {
    let y = M.top + plotH;
    for (const x of series) {
      const v = m[x.key] || 0;
      if (!v) continue;
      const hgt = (plotH * v) / max;
      y -= hgt;
      svg.append(s('rect', { x: M.left + i * bw + bw * 0.1, y, width: Math.max(1, bw * 0.8), height: hgt, class: x.cls },
        s('title', {}, `${fmtClock(m.minute)}: ${v} ${x.label.toLowerCase()}`)));
    }
  });
  xLabels(svg, minutes);
  container.append(svg);
}

// series: [{ key, label, cls }]; a null value breaks the line.
export function lines(container, minutes, series, unit, emptyText) {
  clear(container);
  const values = series.flatMap((x) => minutes.map((m) => m[x.key]).filter((v) => v !== null && v !== undefined));
  if (!values.length) { empty(container, emptyText); return; }
  const peak = Math.max(...values);
  const last = (x) => [...minutes].reverse().find((m) => m[x.key] !== null && m[x.key] !== undefined);
  const label = `Latency over ${minutes.length} minutes, highest ${peak} ${unit}; latest ${series.map((x) => { const l = last(x); return `${x.label} ${l ? l[x.key] : '—'} ${unit}`; }).join(', ')}.`;
  const max = niceMax(peak);
  const svg = frame(label, max, minutes.length, (v) => `${Number.isInteger(v) ? v : v.toFixed(1)}`);
  const plotH = H - M.top - M.bottom;
  const bw = (W - M.left - M.right) / minutes.length;
  const px = (i) => M.left + i * bw + bw / 2;
  const py = (v) => M.top + plotH - (plotH * v) / max;
  for (const x of series) {
    let seg = [];
    const flush = () => {
      if (seg.length > 1) svg.append(s('polyline', { points: seg.join(' '), class: `line ${x.cls}` }));
      seg = [];
    };
    minutes.forEach((m, i) => {
      const v = m[x.key];
      if (v === null || v === undefined) { flush(); return; }
      seg.push(`${px(i)},${py(v)}`);
      svg.append(s('circle', { cx: px(i), cy: py(v), r: 2.5, class: `dot ${x.cls}` }, s('title', {}, `${fmtClock(m.minute)}: ${x.label} ${v} ${unit}`)));
    });
    flush();
  }
  xLabels(svg, minutes);
  container.append(svg);
}
