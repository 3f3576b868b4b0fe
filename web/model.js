// The page's model: everything the visualizer's websocket says (docs/PROTOCOL.md, "Visualizer
// websocket"), folded into plain data. No DOM, no clock, no socket: `apply(message, now)` takes
// one message and the time, changes the state and returns what to redraw, so the whole of it
// runs under Node's own test runner (web/test/model.test.js).
//
// Every collection fed by the network is bounded here as in the visualizer's state.rs (the
// visualizer bounds what it sends; a page that trusts no one bounds it again): samples per node,
// pending records per node, peers per node, blocks whose relay wave is remembered.

/** Samples of load and difficulty kept per node (the visualizer keeps as many). */
export const MAX_SAMPLES = 180;
/** Pending records shown per node (the node reports at most as many). */
export const MAX_PENDING = 64;
/** Peers kept per node (the node reports at most as many). */
export const MAX_PEERS = 64;
/** Blocks whose arrival at each node is remembered, for the relay wave. */
export const MAX_WAVES = 16;
/** Records remembered as having just left a pool for a block, for the animation. */
export const MAX_LEAVING = 64;
/** How long a record that left a pool stays drawn as leaving, in ms. */
export const LEAVING_MS = 8000;
/** The window that block intervals and hash rates are computed over, in ms. */
export const RATE_WINDOW_MS = 60000;
/** Older blocks asked for in one page as the strip scrolls back (the visualizer serves at most
 * 100 a page). */
export const OLDER_PAGE = 100;
/** Blocks the page holds at most: the snapshot's recent ones, what arrives, and the older ones
 * paged in as the strip scrolls back. Past it, scrolling back stops with a message (a reload
 * starts afresh at the tip). */
export const MAX_HELD_BLOCKS = 20000;

/** The first 8 hex digits of a hash or key, as the visualizer shortens them. */
export function short(hash) {
  return typeof hash === 'string' ? hash.slice(0, 8) : '?';
}

/** A record summary (or full record) in words. */
export function describe(r) {
  switch (r && r.kind) {
    case 'join': return r.who + ' joined';
    case 'purchase': return r.who + ' bought a ' + r.monkey + (r.price ? ' for ' + r.price : '');
    case 'transfer': return r.who + ' sent ' + r.amount + ' to ' + r.to;
    case 'vote': return r.who + ' voted ' + r.choice + ' in ' + r.poll;
    default: return 'unknown record';
  }
}

/** What one message changed, for the views to redraw only that. */
function changes() {
  return {
    chain: false, // the strip's tiles or links
    nodes: false, // the network table and each node's tip
    totals: false,
    shoppers: false,
    polls: false,
    tracker: false,
    graph: false, // the topology or a relay wave
    charts: false, // load, difficulty, intervals, hash rates
    pool: false, // pending records
    log: [], // [{text, kind}] lines for the event log
    banner: null, // a reorg's announcement
  };
}

/** An empty observation of one node: its peers, its pool and its samples. */
function observed() {
  return { peers: [], pool: new Map(), ready: 0, waiting: 0, samples: [] };
}

/** The model: the block tree the page knows, the ledger's rows, the nodes and what they report. */
export class Model {
  constructor() {
    this.blocks = new Map(); // hash -> summary
    this.byHeight = []; // height -> [hash] in arrival order
    this.children = new Map(); // hash -> [hash]
    this.best = []; // height -> hash on the best chain
    this.lane = new Map(); // hash -> lane (0 = best chain)
    this.maxLane = 0;
    this.tip = null;
    this.height = 0;
    this.nodes = [];
    this.tracker = null;
    this.tipsByHash = new Map(); // hash -> [node] whose tip it is
    this.totals = {};
    this.shoppers = new Map(); // account -> row
    this.polls = new Map(); // poll -> tally
    this.fresh = new Map(); // hash -> arrival time, for the arrival glow
    this.seenSnapshot = false; // later snapshots are reconnections
    this.observed = new Map(); // node id -> observed()
    this.waves = new Map(); // block hash -> Map(node id -> received_ms), newest last
    this.leaving = []; // [{node, id, block, what, at}] records that just left a pool
    this.snapshotMs = 0;
    this.low = 0; // the lowest best-chain height held: the visualizer serves older on demand
    this.olderPending = null; // the `before` hash of the page of older blocks being fetched
  }

  /** Applies one websocket message at `now` (ms); returns what changed. */
  apply(msg, now) {
    const out = changes();
    switch (msg && msg.type) {
      case 'snapshot': this.applySnapshot(msg, now, out); break;
      case 'blocks': this.applyBlocks(msg.blocks, now, out); break;
      case 'tip': this.applyTip(msg, out); break;
      case 'nodes': this.applyNodes(msg.tracker, msg.nodes, out); break;
      case 'ledger': this.applyLedger(msg, false, out); break;
      case 'load': this.applyLoad(msg.node, msg.sample, out); break;
      case 'peers': this.applyPeers(msg.node, msg.peers, out); break;
      case 'pool': this.applyPool(msg, now, out); break;
      case 'arrivals': this.applyArrivals(msg.node, msg.blocks, out); break;
      default: break;
    }
    return out;
  }

  resetChain() {
    this.blocks.clear();
    this.byHeight = [];
    this.children.clear();
    this.best = [];
    this.lane.clear();
    this.maxLane = 0;
    this.fresh.clear();
    this.waves.clear();
    this.leaving = [];
    this.low = 0;
    this.olderPending = null;
  }

  /** Adds a block summary to the tree; false if it was already there. */
  addBlock(b) {
    if (this.blocks.has(b.hash)) return false;
    this.blocks.set(b.hash, b);
    (this.byHeight[b.height] || (this.byHeight[b.height] = [])).push(b.hash);
    if (b.height > 0) {
      const siblings = this.children.get(b.prev);
      if (siblings) siblings.push(b.hash);
      else this.children.set(b.prev, [b.hash]);
    }
    return true;
  }

  /** The best chain from scratch: the tip, then parent links down to the oldest block held
   * (genesis, or the first of the visualizer's window); `low` is that block's height. */
  walkBest() {
    this.best = [];
    let cursor = this.blocks.get(this.tip);
    this.low = this.height;
    while (cursor) {
      this.best[cursor.height] = cursor.hash;
      this.low = cursor.height;
      if (cursor.height === 0) break;
      cursor = this.blocks.get(cursor.prev);
    }
    this.best.length = this.height + 1;
  }

  /** The page of older blocks to ask the visualizer for next (`GET /api/blocks?before=&count=`),
   * or null when genesis is held, a page is on its way, or the page holds all it may. Marks it
   * as on its way until `applyOlder` or `olderFailed`. */
  nextOlder() {
    const before = this.best[this.low];
    if (this.low === 0 || !before || this.olderPending) return null;
    if (this.blocks.size + OLDER_PAGE > MAX_HELD_BLOCKS) return null;
    this.olderPending = before;
    return { before, count: OLDER_PAGE };
  }

  /** The page asked for could not be fetched: it may be asked again. */
  olderFailed() {
    this.olderPending = null;
  }

  /** A page of older best-chain blocks (`{blocks, more}`, oldest first) for the request
   * `before`. Taken only if it links, block to block, onto the oldest block held; returns what
   * changed, with `older`: how many heights were added below the old `low`. */
  applyOlder(before, page, out) {
    out = out || changes();
    out.older = 0;
    if (before !== this.olderPending) return out;
    this.olderPending = null;
    const held = this.blocks.get(before);
    const blocks = page && Array.isArray(page.blocks) ? page.blocks : [];
    if (!held || this.best[this.low] !== before || blocks.length === 0) return out;
    let expected = held.prev;
    for (let i = blocks.length - 1; i >= 0; i--) {
      const b = blocks[i];
      if (!b || b.hash !== expected || b.height !== held.height - (blocks.length - i)) {
        out.log.push({ text: 'Older blocks refused: they do not link to block #' + held.height,
          kind: 'reorg' });
        return out;
      }
      expected = b.prev;
    }
    const oldLow = this.low;
    for (const b of blocks) {
      this.addBlock(b);
      this.best[b.height] = b.hash;
    }
    this.low = blocks[0].height;
    this.layout(this.low, oldLow);
    out.older = oldLow - this.low;
    out.chain = true;
    return out;
  }

  /** Lanes for heights from..to: the best block in lane 0, side blocks below, each preferring
   * its parent's lane so a branch stays on one row. */
  layout(from, to) {
    for (let h = Math.max(0, from); h <= to && h < this.byHeight.length; h++) {
      const list = this.byHeight[h];
      if (!list) continue;
      const used = new Set();
      const bestHash = this.best[h];
      if (bestHash && this.blocks.has(bestHash)) {
        this.lane.set(bestHash, 0);
        used.add(0);
      }
      for (const hash of list) {
        if (hash === bestHash) continue;
        const parentLane = this.lane.get(this.blocks.get(hash).prev);
        let lane = parentLane > 0 && !used.has(parentLane) ? parentLane : 1;
        while (used.has(lane)) lane++;
        this.lane.set(hash, lane);
        used.add(lane);
        if (lane > this.maxLane) this.maxLane = lane;
      }
    }
  }

  applySnapshot(s, now, out) {
    const wasLive = this.seenSnapshot;
    const before = this.height;
    this.resetChain();
    for (const b of s.blocks) this.addBlock(b);
    this.tip = s.tip;
    this.height = s.height;
    this.walkBest();
    this.layout(this.low, this.byHeight.length - 1);
    this.shoppers.clear();
    this.polls.clear();
    this.applyLedger(s.ledger, true, out);
    this.applyNodes(s.tracker, s.nodes, out, true);
    this.observed.clear();
    for (const o of s.observed || []) {
      this.applyPeers(o.node, o.peers, out);
      this.applyPool({ node: o.node, full: true, added: o.pool, removed: [], ready: o.ready,
        waiting: o.waiting }, now, out);
      for (const sample of o.samples) this.applyLoad(o.node, sample, out);
    }
    this.seenSnapshot = true;
    if (wasLive) {
      const gained = this.height - before;
      out.log.push({ text: 'Reconnected: snapshot of ' + s.blocks.length + ' blocks' +
        (gained > 0 ? ', ' + gained + ' new on the best chain' : ''), kind: 'info' });
    } else {
      out.log.push({ text: 'Connected: ' + s.blocks.length + ' blocks, tip #' + s.height,
        kind: 'info' });
    }
    out.snapshot = true;
    Object.assign(out, { chain: true, nodes: true, totals: true, shoppers: true, polls: true,
      tracker: true, graph: true, charts: true, pool: true });
  }

  applyBlocks(blocks, now, out) {
    let low = Infinity;
    let high = -1;
    for (const b of blocks) {
      if (!this.addBlock(b)) continue;
      this.fresh.set(b.hash, now);
      low = Math.min(low, b.height);
      high = Math.max(high, b.height);
      const what = b.count === 0 ? 'no records' : b.count === 1 ? '1 record' : b.count + ' records';
      if (blocks.length <= 3) {
        out.log.push({ text: 'Block #' + b.height + ' ' + short(b.hash) + ' by ' + b.miner + ', ' +
          what });
      }
    }
    if (blocks.length > 3) {
      out.log.push({ text: blocks.length + ' blocks arrived (#' + low + ' to #' + high + ')' });
    }
    if (high >= 0) this.layout(low, high);
    // The glow lasts a moment; old entries only cost memory.
    for (const [hash, at] of this.fresh) if (now - at > 5000) this.fresh.delete(hash);
    out.chain = true;
    out.charts = high >= 0;
  }

  applyTip(t, out) {
    let low = Infinity;
    for (const hash of t.disconnected) {
      const b = this.blocks.get(hash);
      if (b) {
        if (this.best[b.height] === hash) this.best[b.height] = undefined;
        low = Math.min(low, b.height);
      }
    }
    let known = true;
    for (const hash of t.connected) {
      const b = this.blocks.get(hash);
      if (!b) {
        known = false;
        continue;
      }
      this.best[b.height] = hash;
      low = Math.min(low, b.height);
    }
    this.tip = t.hash;
    this.height = t.height;
    if (!known) this.walkBest();
    this.best.length = this.height + 1;
    if (t.disconnected.length > 0) {
      const depth = t.disconnected.length;
      const at = this.height - t.connected.length + 1;
      const text = 'Reorg of depth ' + depth + ' at height ' + at + ': ' + depth +
        (depth === 1 ? ' block left' : ' blocks left') + ' the best chain, ' +
        t.connected.length + ' joined it';
      out.banner = text;
      out.log.push({ text, kind: 'reorg' });
    }
    this.layout(Number.isFinite(low) ? low : this.low, this.byHeight.length - 1);
    this.recomputeTips();
    out.chain = true;
    out.nodes = true;
    out.charts = true;
  }

  applyNodes(tracker, nodes, out, quiet) {
    const before = new Map(this.nodes.map((n) => [n.id, n]));
    this.tracker = tracker;
    this.nodes = nodes;
    if (this.seenSnapshot && !quiet) {
      for (const n of nodes) {
        const old = before.get(n.id);
        if (!old) out.log.push({ text: 'Node ' + n.short + ' appeared at ' + n.addr, kind: 'info' });
        else if (old.link !== n.link && (n.link === 'following' || n.link === 'down')) {
          out.log.push({ text: 'Node ' + n.short + (n.link === 'following' ? ' followed' : ' unreachable'),
            kind: 'info' });
        }
        const offences = (m) => (m ? m.offences : 0);
        if (n.misbehaviour && offences(n.misbehaviour) > offences(old && old.misbehaviour)) {
          out.log.push({ text: 'Node ' + n.short + ' dropped: it sent ' + n.misbehaviour.sent +
            ', refused: ' + n.misbehaviour.why, kind: 'reorg' });
        }
      }
      for (const [id, old] of before) {
        if (!nodes.some((n) => n.id === id)) out.log.push({ text: 'Node ' + old.short + ' left', kind: 'info' });
      }
    }
    // Observations of nodes no longer in the table go with them.
    const ids = new Set(nodes.map((n) => n.id));
    for (const id of this.observed.keys()) if (!ids.has(id)) this.observed.delete(id);
    this.recomputeTips();
    out.nodes = true;
    out.tracker = true;
    out.chain = true;
    out.graph = true;
  }

  applyLedger(l, full, out) {
    this.totals = l.totals;
    for (const row of l.shoppers) this.shoppers.set(row.account, row);
    for (const account of l.gone) this.shoppers.delete(account);
    for (const p of l.polls) {
      if (p.tally.length === 0) this.polls.delete(p.poll);
      else this.polls.set(p.poll, p.tally);
    }
    out.totals = true;
    out.shoppers = out.shoppers || full || l.shoppers.length > 0 || l.gone.length > 0;
    out.polls = out.polls || full || l.polls.length > 0;
  }

  /** What the page knows a node reported; made on first use. */
  observe(node) {
    let o = this.observed.get(node);
    if (!o) {
      o = observed();
      this.observed.set(node, o);
    }
    return o;
  }

  applyLoad(node, sample, out) {
    if (typeof node !== 'string' || !sample) return;
    const samples = this.observe(node).samples;
    const last = samples[samples.length - 1];
    if (last && sample.at_ms <= last.at_ms) return;
    samples.push(sample);
    if (samples.length > MAX_SAMPLES) samples.splice(0, samples.length - MAX_SAMPLES);
    out.charts = true;
    out.graph = true;
  }

  applyPeers(node, peers, out) {
    if (typeof node !== 'string' || !Array.isArray(peers)) return;
    this.observe(node).peers = peers.slice(0, MAX_PEERS);
    out.graph = true;
  }

  applyPool(p, now, out) {
    if (typeof p.node !== 'string') return;
    const o = this.observe(p.node);
    if (p.full) o.pool.clear();
    for (const left of p.removed || []) {
      const had = o.pool.get(left.id);
      if (!had) continue;
      o.pool.delete(left.id);
      if (left.block) {
        this.leaving.push({ node: p.node, id: left.id, block: left.block, what: describe(had.record),
          at: now });
      }
    }
    for (const r of p.added || []) {
      if (o.pool.has(r.id) || o.pool.size < MAX_PENDING) o.pool.set(r.id, r);
    }
    o.ready = p.ready;
    o.waiting = p.waiting;
    this.leaving = this.leaving.filter((l) => now - l.at < LEAVING_MS).slice(-MAX_LEAVING);
    out.pool = true;
  }

  applyArrivals(node, blocks, out) {
    if (typeof node !== 'string' || !Array.isArray(blocks)) return;
    for (const a of blocks) {
      let wave = this.waves.get(a.hash);
      if (!wave) {
        wave = new Map();
        this.waves.set(a.hash, wave);
        // Maps iterate in insertion order: the first key is the oldest wave.
        while (this.waves.size > MAX_WAVES) this.waves.delete(this.waves.keys().next().value);
      }
      if (!wave.has(node)) wave.set(node, a.received_ms);
    }
    out.graph = true;
  }

  /** Which nodes sit on which block, for the markers on tiles. */
  recomputeTips() {
    this.tipsByHash.clear();
    for (const n of this.nodes) {
      if (n.link === 'none' && n.status !== 'A') continue;
      const list = this.tipsByHash.get(n.tip_hash) || [];
      list.push(n);
      this.tipsByHash.set(n.tip_hash, list);
    }
  }

  /** Every block built on `hash` that the page knows. */
  descendants(hash) {
    const found = new Set();
    const stack = [hash];
    while (stack.length) {
      for (const child of this.children.get(stack.pop()) || []) {
        if (!found.has(child)) {
          found.add(child);
          stack.push(child);
        }
      }
    }
    return found;
  }

  /** The newest block with a relay wave, and each node's delay after the first arrival (ms). */
  latestWave() {
    let hash = null;
    for (const key of this.waves.keys()) hash = key;
    if (hash === null) return null;
    const wave = this.waves.get(hash);
    const first = Math.min(...wave.values());
    const delays = new Map();
    for (const [node, at] of wave) delays.set(node, at - first);
    return { hash, first, delays };
  }

  /** The links between nodes: one edge per pair where both ends list each other (a link is
   * live only once both ends hold it), and the one-sided claims apart. */
  edges() {
    const live = [];
    const oneSided = [];
    const ids = [...this.observed.keys()].sort();
    for (const a of ids) {
      for (const b of this.observed.get(a).peers) {
        const other = this.observed.get(b);
        const mutual = other && other.peers.includes(a);
        if (mutual) {
          if (a < b) live.push([a, b]);
        } else {
          oneSided.push([a, b]);
        }
      }
    }
    return { live, oneSided };
  }

  /** The series the charts draw, over [now - span, now]: per node its load and difficulty
   * samples; the best chain's block intervals; per node its hash rate estimated from the work
   * (2^bits) of the best-chain blocks it mined in the RATE_WINDOW_MS before each of them. */
  series(now, span) {
    const from = now - span;
    const nodes = [];
    for (const n of this.nodes) {
      const o = this.observed.get(n.id);
      nodes.push({ id: n.id, short: n.short,
        samples: o ? o.samples.filter((s) => s.at_ms >= from) : [] });
    }
    const intervals = [];
    const mined = new Map(); // miner short -> [{time, work}]
    for (let h = this.best.length - 1; h >= Math.max(1, this.low); h--) {
      const b = this.blocks.get(this.best[h]);
      if (!b) continue;
      if (b.time < from - RATE_WINDOW_MS) break;
      const parent = this.blocks.get(b.prev);
      // Genesis carries a fixed old timestamp: the first block's interval means nothing.
      if (parent && parent.height > 0 && b.time >= from) intervals.push({ at_ms: b.time, ms: b.time - parent.time });
      const list = mined.get(b.miner) || [];
      list.push({ time: b.time, work: 2 ** b.bits });
      mined.set(b.miner, list);
    }
    intervals.reverse();
    const rates = [];
    for (const n of nodes) {
      const list = (mined.get(n.short) || []).reverse();
      const points = [];
      for (let i = 0; i < list.length; i++) {
        if (list[i].time < from) continue;
        let work = 0;
        for (let j = i; j >= 0 && list[i].time - list[j].time < RATE_WINDOW_MS; j--) work += list[j].work;
        points.push({ at_ms: list[i].time, hashes_per_s: work / (RATE_WINDOW_MS / 1000) });
      }
      rates.push({ id: n.id, short: n.short, points });
    }
    return { from, to: now, nodes, intervals, rates };
  }
}
