// The Monkeychain visualizer's page, the entry module: opens the websocket at /ws (a snapshot,
// then deltas; see "Visualizer websocket" in docs/PROTOCOL.md), feeds every message to the
// model (model.js, pure) and redraws only what the message changed: the chain strip (strip.js),
// the panels (panels.js), the network graph (graph.js), the charts (charts.js). Block details and
// the tamper lesson are in tamper.js.
//
// Rules the page keeps:
// - Text from the network is only ever put in the page with textContent (dom.js's el()); no
//   HTML is ever parsed from data.
// - Every delta costs work in proportion to what changed; a snapshot rebuilds everything; the
//   views draw at most once a frame.
// - The socket reconnects by itself with backoff and the fresh snapshot shows what was missed.
// - The snapshot holds only recent blocks; older ones are fetched a page at a time
//   (GET /api/blocks) when the strip is scrolled back to its left end, one page at a time.

import { Model } from './model.js';
import { Strip } from './strip.js';
import * as panels from './panels.js';
import * as tamper from './tamper.js';
import { Graph } from './graph.js';
import { Charts } from './charts.js';

const model = new Model();
/** What the page adds to the model: the selected block, the tampering, following the tip. */
const view = { follow: true, selected: null, tampered: null, broken: new Set(), live: false };
const strip = new Strip(model, view, (hash) => tamper.openDetails(hash), () => loadOlder());
tamper.setup(model, view, strip);
const graph = new Graph(model);
const charts = new Charts(model);

/** Time spent applying messages and drawing, for the tests and the curious. */
const timing = { applied: 0, applyMs: 0, maxApplyMs: 0, frames: 0, maxFrameMs: 0, parts: {} };

// Panels that redraw at most once a frame, whatever number of messages changed them.
const dirty = new Set();
let frameQueued = false;

/** Runs one view's drawing, adding its time to `timing.parts`. */
function timed(name, draw) {
  const started = performance.now();
  draw();
  timing.parts[name] = (timing.parts[name] || 0) + performance.now() - started;
}

function drawDirty() {
  frameQueued = false;
  const started = performance.now();
  const now = Date.now();
  if (dirty.has('nodes')) timed('nodes', () => panels.renderNodes(model));
  if (dirty.has('pool')) timed('pool', () => panels.renderPool(model, now));
  if (dirty.has('graph')) timed('graph', () => graph.render(now));
  if (dirty.has('charts')) timed('charts', () => charts.render(now));
  dirty.clear();
  const took = performance.now() - started;
  timing.frames++;
  timing.maxFrameMs = Math.max(timing.maxFrameMs, took);
}

function markDirty(what) {
  dirty.add(what);
  if (!frameQueued) {
    frameQueued = true;
    requestAnimationFrame(drawDirty);
  }
}

/** Applies one message and redraws what it changed. */
function onMessage(msg) {
  const started = performance.now();
  const out = model.apply(msg, Date.now());
  if (out.snapshot) {
    if (view.tampered && !model.blocks.has(view.tampered)) tamper.clearTamper();
    view.follow = true;
  }
  for (const line of out.log) panels.logEvent(line.text, line.kind);
  if (out.banner) panels.showBanner(out.banner);
  if (out.totals) panels.renderTotals(model);
  if (out.shoppers) panels.renderShoppers(model);
  if (out.polls) panels.renderPolls(model);
  if (out.tracker) panels.renderTracker(model);
  for (const what of ['nodes', 'pool', 'graph', 'charts']) if (out[what]) markDirty(what);
  if (out.chain) strip.schedule();
  const took = performance.now() - started;
  if (out.snapshot) model.snapshotMs = Math.round(took);
  timing.applied++;
  timing.applyMs += took;
  timing.maxApplyMs = Math.max(timing.maxApplyMs, took);
}

/** Pause before asking again for older blocks after a refusal (too many requests, no node). */
const OLDER_RETRY_MS = 1000;

/** Fetches the next page of older blocks, if the model wants one, and draws it. */
async function loadOlder() {
  const request = model.nextOlder();
  if (!request) return;
  let page = null;
  try {
    const answer = await fetch('/api/blocks?before=' + request.before + '&count=' + request.count);
    if (answer.ok) page = await answer.json();
  } catch (e) {
    page = null;
  }
  if (!page) {
    setTimeout(() => {
      model.olderFailed();
      strip.schedule();
    }, OLDER_RETRY_MS);
    return;
  }
  const out = model.applyOlder(request.before, page);
  for (const line of out.log) panels.logEvent(line.text, line.kind);
  if (out.chain) strip.schedule();
}

// Records leave pools with an animation that lasts a few seconds: redraw the pool panel while
// one is on, and the charts' moving time axis every second.
setInterval(() => {
  if (model.leaving.length) markDirty('pool');
  markDirty('charts');
  markDirty('graph');
}, 1000);

// ---------------------------------------------------------------- the socket

let socket = null;
let backoff = 500;
let retryTimer = null;

function connect() {
  clearTimeout(retryTimer);
  panels.setConn('connecting…', 'warn');
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  try {
    socket = new WebSocket(scheme + location.host + '/ws');
  } catch (e) {
    retry();
    return;
  }
  socket.onopen = () => {
    backoff = 500;
    panels.setConn('live', 'ok');
    view.live = true;
  };
  socket.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    onMessage(msg);
  };
  socket.onclose = (event) => {
    socket = null;
    if (view.live) {
      panels.logEvent('Connection lost' + (event.reason ? ' (' + event.reason + ')' : '') +
        '; reconnecting', 'reorg');
    }
    view.live = false;
    retry();
  };
  socket.onerror = () => {
    // onclose follows and retries.
  };
}

function retry() {
  const wait = backoff;
  backoff = Math.min(backoff * 2, 5000);
  panels.setConn('reconnecting in ' + Math.ceil(wait / 1000) + ' s', 'bad');
  retryTimer = setTimeout(connect, wait);
}

/** Draws every pending change now, the strip first (it reads the layout before anything is
 * written), then the page's layout as the frame would; returns how long it all took (ms). The
 * tests time frames with it. */
function drawNow() {
  const started = performance.now();
  timed('strip', () => strip.render());
  drawDirty();
  timed('layout', () => document.body.offsetHeight);
  return performance.now() - started;
}

// For tests and curious visitors: the model, the view state, the timings, and `feed`, which
// applies a message as if the socket had sent it.
window.monkeyVisualizer = {
  state: model,
  model,
  view,
  timing,
  feed: onMessage,
  drawNow,
  openDetails: tamper.openDetails,
  closeDetails: tamper.closeDetails,
  renderChain: () => strip.render(),
  charts,
  graph,
};

connect();
