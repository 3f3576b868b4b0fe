// Difficulty against CPU load, on one time axis over the last minutes: per node the difficulty it
// mines at and the CPU load of other processes on its host (the node samples both every second
// and says so to subscribers), the best chain's block intervals, and per node its hash rate
// estimated from the work (2^bits) of the blocks it mined. Drawn by uPlot (web/vendor/uplot,
// MIT), loaded from the visualizer like every other file of the page.

import uPlot from './vendor/uplot/uPlot.esm.js';
import { $ } from './dom.js';

/** The time span the charts show, in ms. */
export const SPAN_MS = 180000;
/** Width of one time bucket on the axis, in ms: samples in one bucket show as one point. */
const BUCKET_MS = 1000;

/** A colour per node, by its place in the table. */
function colour(i) {
  return 'hsl(' + ((i * 137) % 360) + ' 65% 45%)';
}

/** The time axis, in seconds for uPlot, one bucket each, and a value array per series. */
function axis(from) {
  const xs = [];
  for (let t = from; t <= from + SPAN_MS; t += BUCKET_MS) xs.push(t / 1000);
  return xs;
}

function bucket(from, at) {
  return Math.floor((at - from) / BUCKET_MS);
}

/** The charts over a model. */
export class Charts {
  constructor(model) {
    this.model = model;
    this.plots = {}; // name -> {plot, key}
    this.last = {}; // name -> the data last drawn, for tests
    // Reading a width forces the page's layout: done on resizing only, not every second.
    this.width = 0;
    window.addEventListener('resize', () => {
      this.width = 0;
    });
  }

  /** One chart: makes it again only when its series (the nodes) change. */
  draw(name, title, unit, names, data, opts) {
    const box = $('chart-' + name);
    if (!this.width) this.width = Math.max(300, box.clientWidth || 600);
    const width = this.width;
    const key = names.join(',') + '|' + width;
    this.last[name] = { names, data };
    let entry = this.plots[name];
    if (!entry || entry.key !== key) {
      if (entry) entry.plot.destroy();
      const series = [{}].concat(names.map((n, i) => Object.assign({
        label: n, stroke: colour(i), width: 2, spanGaps: true,
        points: { show: opts.points || false },
      }, opts.series || {})));
      const plot = new uPlot({
        title, width, height: 170,
        cursor: { sync: { key: 'monkey' } },
        scales: { x: { time: true }, y: opts.y || {} },
        axes: [{}, { label: unit, size: 55 }],
        series,
        legend: { show: names.length <= 12 },
      }, data, box);
      entry = { plot, key };
      this.plots[name] = entry;
    } else {
      entry.plot.setData(data);
    }
  }

  render(now) {
    const m = this.model;
    const from = now - SPAN_MS;
    const s = m.series(now, SPAN_MS);
    const xs = axis(from);
    const empty = () => new Array(xs.length).fill(null);
    const names = s.nodes.map((n) => n.short);
    const difficulty = [];
    const load = [];
    for (const n of s.nodes) {
      const d = empty();
      const l = empty();
      for (const sample of n.samples) {
        const i = bucket(from, sample.at_ms);
        if (i < 0 || i >= xs.length) continue;
        // The highest difficulty and load in the bucket: a rise is never hidden.
        d[i] = Math.max(d[i] ?? 0, sample.difficulty);
        l[i] = Math.max(l[i] ?? 0, Math.round(sample.load * 100));
      }
      difficulty.push(d);
      load.push(l);
    }
    this.draw('difficulty', 'Difficulty each node mines at', 'bits', names, [xs, ...difficulty],
      { series: { paths: uPlot.paths.stepped({ align: 1 }) },
        // A rise of one bit must show: the axis hugs the values, not zero.
        y: { range: (u, min, max) => [Math.max(0, (min ?? 0) - 1), (max ?? 1) + 1] } });
    this.draw('load', 'CPU load of other processes', '%', names, [xs, ...load],
      { y: { range: [0, 100] } });
    const intervals = empty();
    for (const b of s.intervals) {
      const i = bucket(from, b.at_ms);
      if (i >= 0 && i < xs.length) intervals[i] = b.ms / 1000;
    }
    this.draw('intervals', 'Time between best-chain blocks', 's', ['interval'], [xs, intervals],
      { points: true });
    const rates = s.rates.map((r) => {
      const values = empty();
      for (const p of r.points) {
        const i = bucket(from, p.at_ms);
        if (i >= 0 && i < xs.length) values[i] = Math.round(p.hashes_per_s);
      }
      return values;
    });
    this.draw('rates', 'Hash rate from the work of the blocks each node mined (last minute)',
      'hashes/s', names, [xs, ...rates], { points: true });
  }

  /** The values last plotted for one node on one chart (nulls left out), for tests. */
  values(name, short) {
    const last = this.last[name];
    if (!last) return [];
    const i = last.names.indexOf(short);
    return i < 0 ? [] : last.data[i + 1].filter((v) => v !== null);
  }
}
