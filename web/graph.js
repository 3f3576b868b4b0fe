// The network as a graph: every node the visualizer knows on a circle (its id, tip and CPU
// load), one edge per live link (both ends report it: see the `peers` message), a dashed edge
// for a link only one end reports (being opened, or closing), and the relay wave of the newest
// block: each node that got it is lit, labelled with how long after the first node it did.
// Drawn in SVG with text nodes only.

import { $ } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
/** The drawing's size for up to CROWD nodes; it grows with more, so labels keep their room. */
const SIZE = 420;
/** Past this many nodes, each shows only its id and relay time. */
const CROWD = 12;
const NODE_R = 15;

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

/** The graph over a model. */
export class Graph {
  constructor(model) {
    this.model = model;
    this.box = $('graph');
  }

  /** Where each node sits: on a circle, in the table's order (by id), so places are stable. */
  places(size) {
    const nodes = this.model.nodes;
    const radius = size / 2 - 60;
    const out = new Map();
    nodes.forEach((n, i) => {
      const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(nodes.length, 1);
      out.set(n.id, { x: size / 2 + radius * Math.cos(angle), y: size / 2 + radius * Math.sin(angle) });
    });
    return out;
  }

  render() {
    const m = this.model;
    const crowded = m.nodes.length > CROWD;
    const size = SIZE + 30 * Math.max(0, m.nodes.length - CROWD);
    const places = this.places(size);
    const root = svg('svg', { viewBox: '0 0 ' + size + ' ' + size, role: 'img',
      'aria-label': 'The network: nodes and their live links' });
    const { live, oneSided } = m.edges();
    const wave = m.latestWave();
    const block = wave && m.blocks.get(wave.hash);
    for (const [a, b] of oneSided) {
      const pa = places.get(a);
      const pb = places.get(b);
      if (!pa || !pb) continue;
      root.append(svg('line', { class: 'edge one-sided', x1: pa.x, y1: pa.y, x2: pb.x, y2: pb.y,
        'data-a': a, 'data-b': b }));
    }
    for (const [a, b] of live) {
      const pa = places.get(a);
      const pb = places.get(b);
      if (!pa || !pb) continue;
      // An edge the newest block crossed (both ends have it) is drawn lit.
      const crossed = wave && wave.delays.has(a) && wave.delays.has(b);
      root.append(svg('line', { class: 'edge live' + (crossed ? ' crossed' : ''), x1: pa.x, y1: pa.y,
        x2: pb.x, y2: pb.y, 'data-a': a, 'data-b': b }));
    }
    for (const n of m.nodes) {
      const p = places.get(n.id);
      const o = m.observed.get(n.id);
      const last = o && o.samples.length ? o.samples[o.samples.length - 1] : null;
      const load = last ? last.load : n.load;
      const delay = wave ? wave.delays.get(n.id) : undefined;
      const g = svg('g', { class: 'gnode' + (delay !== undefined ? ' got' : '') +
        (n.link === 'following' ? '' : ' away'), 'data-node': n.id,
        transform: 'translate(' + p.x.toFixed(1) + ',' + p.y.toFixed(1) + ')' });
      if (delay !== undefined) g.dataset.delay = String(delay);
      g.append(svg('circle', { r: NODE_R }));
      // The load as an arc-less ring: the fuller the ring, the busier the host.
      const ring = 2 * Math.PI * (NODE_R + 4);
      g.append(svg('circle', { class: 'load', r: NODE_R + 4,
        'stroke-dasharray': (ring * Math.max(0, Math.min(1, load || 0))).toFixed(1) + ' ' + ring.toFixed(1) }));
      g.append(svg('text', { class: 'id', y: 4 }, n.short.slice(0, 4)));
      const below = p.y > size / 2 ? 1 : -1;
      if (!crowded) {
        g.append(svg('text', { class: 'info', y: below * (NODE_R + 16) },
          '#' + n.tip_height + ' · ' + (load === null || load === undefined ? '–' : Math.round(load * 100) + '%')));
      }
      if (delay !== undefined) {
        g.append(svg('text', { class: 'delay', y: below * (NODE_R + (crowded ? 16 : 29)) },
          delay === 0 ? 'first' : '+' + delay + ' ms'));
      }
      root.append(g);
    }
    this.box.replaceChildren(root);
    const caption = $('graph-caption');
    caption.textContent = m.nodes.length + ' nodes, ' + live.length + ' live link' +
      (live.length === 1 ? '' : 's') + (block ? '; block #' + block.height + ' reached ' +
        wave.delays.size + ' node' + (wave.delays.size === 1 ? '' : 's') : '');
    caption.dataset.links = String(live.length);
  }
}
