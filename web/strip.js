// The chain strip: the block tree as linked tiles, newest at the right, following the tip.
// Virtualised: only the tiles of the heights on screen exist in the DOM, and links are drawn on a
// canvas for the visible part only, so 10,000 blocks scroll as smoothly as 10.
//
// The strip starts at the oldest block the page holds (`model.low`): the visualizer sends only
// the recent blocks, and when the strip is scrolled near its left end it asks for older ones
// (`needOlder`), which then appear on the left while the blocks on screen stay put.

import { $, el, clock } from './dom.js';
import { short, describe } from './model.js';

// Geometry of the strip; must match .tile in style.css.
export const TILE_W = 204;
const TILE_H = 188;
const GAP_X = 40;
const GAP_Y = 22;
export const PAD = 14;
export const COL = TILE_W + GAP_X;
const ROW = TILE_H + GAP_Y;
const MAX_VISIBLE_LANES = 3;
/** Node tips marked by name on one tile; more are counted. */
const MAX_TIP_MARKS = 6;
/** Heights from the strip's left end at which older blocks are asked for. */
const LOAD_MARGIN = 20;

function y(lane) {
  return PAD + lane * ROW;
}

/** The strip over a model; `view` holds what the page adds (selection, tampering, following). */
export class Strip {
  constructor(model, view, open, needOlder) {
    this.model = model;
    this.view = view;
    this.needOlder = needOlder;
    this.origin = model.low; // the height drawn at the strip's left end
    this.scroller = $('chain-scroll');
    this.inner = $('chain-inner');
    this.canvas = $('links');
    this.box = this.canvas.parentElement;
    this.tiles = new Map(); // hash -> {node, key}
    this.queued = false;
    this.scroller.addEventListener('scroll', () => {
      const end = this.inner.offsetWidth - this.scroller.clientWidth;
      this.view.follow = this.scroller.scrollLeft >= end - COL / 2;
      this.schedule();
    }, { passive: true });
    window.addEventListener('resize', () => this.schedule());
    this.inner.addEventListener('click', (event) => {
      const tile = event.target.closest('.tile');
      if (tile) open(tile.dataset.hash);
    });
    this.inner.addEventListener('keydown', (event) => {
      const tile = event.target.closest('.tile');
      if (tile && (event.key === 'Enter' || event.key === ' ')) {
        event.preventDefault();
        open(tile.dataset.hash);
      }
    });
    $('to-tip').addEventListener('click', () => {
      this.view.follow = true;
      this.schedule();
    });
    $('to-genesis').addEventListener('click', () => {
      this.view.follow = false;
      this.scroller.scrollLeft = 0;
      this.schedule();
    });
  }

  /** The left edge of a tile at `height`. */
  x(height) {
    return PAD + (height - this.origin) * COL;
  }

  /** Draws at the next frame, once however many changes come before it. */
  schedule() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.render();
    });
  }

  /** Scrolls so the block is not hidden under a drawer `covered` pixels wide at the right,
   * leaving room on its right for the blocks after it. */
  reveal(hash, covered) {
    const b = this.model.blocks.get(hash);
    if (!b) return;
    const left = this.x(b.height);
    const visible = this.scroller.clientWidth - covered;
    if (left < this.scroller.scrollLeft || left + TILE_W > this.scroller.scrollLeft + visible) {
      this.view.follow = false;
      this.scroller.scrollLeft = Math.max(0, left - PAD - COL);
      this.schedule();
    }
  }

  tileClass(b) {
    const m = this.model;
    const v = this.view;
    let cls = 'tile';
    if (m.best[b.height] === b.hash) cls += ' best';
    else cls += ' side';
    if (v.tampered === b.hash) cls += ' tampered';
    else if (v.broken.has(b.hash)) cls += ' broken';
    if (v.selected === b.hash) cls += ' selected';
    return cls;
  }

  fillTile(node, b) {
    node.replaceChildren();
    const head = el('div', 't-head');
    head.append(el('span', 't-height', b.height === 0 ? 'genesis' : '#' + b.height),
      el('span', 't-hash', short(b.hash)));
    node.append(head);
    const row = (label, value, tail) => {
      const r = el('div', 't-row', label + ' ');
      r.append(el('code', null, value));
      if (tail) r.append(document.createTextNode(tail));
      node.append(r);
    };
    row('prev', short(b.prev));
    row('nonce', b.nonce, ' · bits ' + b.bits);
    row('miner', b.miner, ' · ' + clock(b.time));
    const list = el('ul', 't-records');
    for (const r of b.records) list.append(el('li', null, describe(r)));
    if (b.count > b.records.length) list.append(el('li', 'more', '+' + (b.count - b.records.length) + ' more'));
    if (b.count === 0) list.append(el('li', 'none', 'no records'));
    node.append(list);
    const tips = this.model.tipsByHash.get(b.hash);
    if (tips) {
      const box = el('div', 't-tips');
      // Many nodes on one tip would cover the tile: the first few, then how many more.
      for (const n of tips.slice(0, MAX_TIP_MARKS)) box.append(el('span', null, '◆ ' + n.short));
      if (tips.length > MAX_TIP_MARKS) box.append(el('span', null, '+' + (tips.length - MAX_TIP_MARKS) + ' nodes'));
      node.append(box);
    }
  }

  tipKey(hash) {
    const tips = this.model.tipsByHash.get(hash);
    return tips ? tips.map((n) => n.short).join(',') : '';
  }

  render() {
    const m = this.model;
    const { scroller, inner } = this;
    // Reads first, then writes: reading the layout after a write would force the browser to lay
    // the page out twice in one frame.
    const width = scroller.clientWidth;
    let left = scroller.scrollLeft;
    const down = scroller.scrollTop;
    const lanes = Math.min(m.maxLane + 1, MAX_VISIBLE_LANES);
    const viewHeight = PAD * 2 + lanes * ROW - GAP_Y + 16;
    if (this.box.style.height !== viewHeight + 'px') this.box.style.height = viewHeight + 'px';
    const top = Math.max(0, m.byHeight.length - 1);
    // Older blocks arrived on the left: shift the view by as much so what is on screen stays.
    if (m.low !== this.origin) {
      if (!this.view.follow && m.low < this.origin) left += (this.origin - m.low) * COL;
      this.origin = m.low;
      for (const tile of this.tiles.values()) tile.node.remove();
      this.tiles.clear();
    }
    const innerWidth = PAD * 2 + (top - this.origin + 1) * COL - GAP_X;
    inner.style.width = innerWidth + 'px';
    inner.style.height = (PAD * 2 + (m.maxLane + 1) * ROW - GAP_Y) + 'px';
    if (this.view.follow) {
      const end = Math.max(0, innerWidth - width);
      if (Math.abs(left - end) > 1) {
        scroller.scrollLeft = end;
        left = end;
      }
    } else if (scroller.scrollLeft !== left) {
      scroller.scrollLeft = left;
    }
    const h0 = Math.max(this.origin, this.origin + Math.floor((left - PAD) / COL) - 1);
    const h1 = Math.min(top, this.origin + Math.ceil((left + width - PAD) / COL) + 1);
    if (m.low > 0 && h0 - m.low < LOAD_MARGIN && this.needOlder) this.needOlder();
    const keep = new Set();
    const now = performance.now();
    for (let h = h0; h <= h1; h++) {
      for (const hash of m.byHeight[h] || []) {
        const b = m.blocks.get(hash);
        keep.add(hash);
        let tile = this.tiles.get(hash);
        if (!tile) {
          const node = el('div');
          node.tabIndex = 0;
          node.setAttribute('role', 'button');
          node.dataset.hash = hash;
          node.dataset.height = b.height;
          tile = { node, key: '' };
          this.tiles.set(hash, tile);
          inner.append(node);
          const arrived = m.fresh.get(hash);
          if (arrived !== undefined && now - arrived < 1500) node.classList.add('fresh');
        }
        const cls = this.tileClass(b);
        const key = cls + '|' + this.tipKey(hash);
        const lane = m.lane.get(hash) || 0;
        tile.node.style.left = this.x(h) + 'px';
        tile.node.style.top = y(lane) + 'px';
        if (tile.key !== key) {
          const fresh = tile.node.classList.contains('fresh');
          tile.node.className = cls + (fresh ? ' fresh' : '');
          this.fillTile(tile.node, b);
          tile.key = key;
        }
      }
    }
    for (const [hash, tile] of this.tiles) {
      if (!keep.has(hash)) {
        tile.node.remove();
        this.tiles.delete(hash);
      }
    }
    this.drawLinks(h0, h1, width, viewHeight, left, down);
    $('following').textContent = this.view.follow ? 'following the tip' : 'scrolled away from the tip';
  }

  /** The links for heights h0..h1 on a canvas of w × h pixels, the strip scrolled by
   * (left, down) pixels. */
  drawLinks(h0, h1, w, h, left, down) {
    const m = this.model;
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
      canvas.style.width = w + 'px';
      canvas.style.height = h + 'px';
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const dx = -left;
    const dy = -down;
    for (let height = Math.max(1, h0); height <= h1 + 1; height++) {
      for (const hash of m.byHeight[height] || []) {
        const b = m.blocks.get(hash);
        const parent = m.blocks.get(b.prev);
        if (!parent) continue;
        const fromX = this.x(parent.height) + TILE_W + dx;
        const fromY = y(m.lane.get(parent.hash) || 0) + TILE_H / 2 + dy;
        const toX = this.x(b.height) + dx;
        const toY = y(m.lane.get(hash) || 0) + TILE_H / 2 + dy;
        const broken = this.view.broken.has(hash);
        const onBest = m.best[b.height] === hash;
        ctx.strokeStyle = broken ? '#e5484d' : onBest ? '#f2a541' : '#7b8496';
        ctx.lineWidth = onBest || broken ? 3 : 2;
        ctx.setLineDash(broken ? [6, 5] : []);
        ctx.beginPath();
        ctx.moveTo(fromX, fromY);
        if (fromY === toY) ctx.lineTo(toX, toY);
        else ctx.bezierCurveTo(fromX + GAP_X, fromY, toX - GAP_X, toY, toX, toY);
        ctx.stroke();
        // The child points at its parent: an arrow head on the parent's edge.
        ctx.setLineDash([]);
        ctx.fillStyle = ctx.strokeStyle;
        ctx.beginPath();
        ctx.moveTo(fromX, fromY);
        ctx.lineTo(fromX + 9, fromY - 5);
        ctx.lineTo(fromX + 9, fromY + 5);
        ctx.fill();
        if (broken) {
          // A cross where the link no longer holds.
          const mx = (fromX + toX) / 2;
          const my = (fromY + toY) / 2;
          ctx.lineWidth = 3;
          ctx.beginPath();
          ctx.moveTo(mx - 6, my - 6);
          ctx.lineTo(mx + 6, my + 6);
          ctx.moveTo(mx + 6, my - 6);
          ctx.lineTo(mx - 6, my + 6);
          ctx.stroke();
        }
      }
    }
  }
}
