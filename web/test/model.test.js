// Unit tests of the page's model (web/model.js) under Node's own runner: `node --test web/test`
// (visualizer's tests run it, so CI does). Messages in, state and "what to redraw" out; no DOM.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Model, MAX_SAMPLES, MAX_PENDING, MAX_PEERS, MAX_WAVES, LEAVING_MS, describe,
} from '../model.js';

const hex = (n) => n.toString(16).padStart(64, '0');
const G = hex(0);

function block(hash, prev, height, extra) {
  return Object.assign({ hash, prev, height, bits: 8, nonce: '1', miner: 'aaaaaaaa', time: 1000 * height,
    count: 0, records: [] }, extra || {});
}

function node(id, extra) {
  return Object.assign({ id, short: id.slice(0, 8), addr: '127.0.0.1:1', status: 'A', link: 'following',
    tip_height: 0, tip_hash: G, behind: 0, on_best: true, load: 0, difficulty: 8, last_block: null,
    delay_ms: null, misbehaviour: null }, extra || {});
}

const totals = { blocks: 0, side_blocks: 0, records: 0, shoppers: 0, monkeys_sold: 0 };

function snapshot(blocks, tip, height, nodes, observed) {
  return { type: 'snapshot', tip, height, blocks, tracker: { addr: 't', up: true }, nodes: nodes || [],
    ledger: { totals, shoppers: [], gone: [], polls: [] }, observed: observed || [] };
}

function pending(id, since, waiting) {
  return { id, seq: 0, since_ms: since, waiting: !!waiting,
    record: { kind: 'purchase', who: 'ann', monkey: 'tamarin', price: 80 } };
}

test('a snapshot, new blocks and a reorg give the best chain, lanes and a banner', () => {
  const m = new Model();
  const out = m.apply(snapshot([block(G, G, 0), block(hex(1), G, 1)], hex(1), 1), 0);
  assert.ok(out.snapshot && out.chain && out.nodes && out.charts);
  assert.equal(m.best[1], hex(1));
  // A side block at height 1 goes to lane 1; then its branch wins.
  const b = m.apply({ type: 'blocks', blocks: [block(hex(2), G, 1), block(hex(3), hex(2), 2)] }, 10);
  assert.ok(b.chain);
  assert.equal(m.lane.get(hex(2)), 1);
  assert.equal(b.log.length, 1 + 1, 'one line per block when few arrive');
  const t = m.apply({ type: 'tip', hash: hex(3), height: 2, disconnected: [hex(1)], connected: [hex(2), hex(3)] }, 20);
  assert.match(t.banner, /Reorg of depth 1 at height 1/);
  assert.deepEqual(m.best, [G, hex(2), hex(3)]);
  assert.equal(m.lane.get(hex(2)), 0, 'the new best chain is lane 0');
  assert.equal(m.lane.get(hex(1)), 1);
  assert.deepEqual([...m.descendants(G)].sort(), [hex(1), hex(2), hex(3)]);
  // A reconnection says so.
  const again = m.apply(snapshot([block(G, G, 0)], G, 0), 30);
  assert.match(again.log[0].text, /Reconnected/);
  assert.equal(m.blocks.size, 1);
});

test('load samples are kept per node, in time order, at most MAX_SAMPLES', () => {
  const m = new Model();
  m.apply(snapshot([block(G, G, 0)], G, 0, [node(hex(7))]), 0);
  for (let i = 0; i < MAX_SAMPLES + 20; i++) {
    const out = m.apply({ type: 'load', node: hex(7), sample: { at_ms: 1000 * i, load: 0.5, difficulty: 10 } }, 0);
    assert.ok(out.charts);
  }
  const samples = m.observed.get(hex(7)).samples;
  assert.equal(samples.length, MAX_SAMPLES);
  assert.equal(samples[0].at_ms, 20000, 'the oldest go first');
  m.apply({ type: 'load', node: hex(7), sample: { at_ms: 5, load: 1, difficulty: 12 } }, 0);
  assert.equal(samples.length, MAX_SAMPLES, 'an older sample is not taken');
  const s = m.series(1000 * (MAX_SAMPLES + 19), 10000);
  assert.equal(s.nodes[0].samples.length, 11, 'only the span asked for');
});

test('pending records come and go; one that left for a block is shown leaving', () => {
  const m = new Model();
  m.apply(snapshot([block(G, G, 0)], G, 0, [node(hex(7))],
    [{ node: hex(7), peers: [], pool: [pending('r1', 5)], ready: 1, waiting: 0, samples: [] }]), 0);
  assert.equal(m.observed.get(hex(7)).pool.size, 1);
  let out = m.apply({ type: 'pool', node: hex(7), full: false, added: [pending('r2', 6, true)], removed: [],
    ready: 1, waiting: 1 }, 100);
  assert.ok(out.pool);
  assert.equal(m.observed.get(hex(7)).pool.get('r2').waiting, true);
  out = m.apply({ type: 'pool', node: hex(7), full: false, added: [],
    removed: [{ id: 'r1', block: hex(1) }, { id: 'r2', block: null }], ready: 0, waiting: 0 }, 200);
  assert.equal(m.observed.get(hex(7)).pool.size, 0);
  assert.equal(m.leaving.length, 1, 'only the mined record leaves for a block');
  assert.deepEqual([m.leaving[0].id, m.leaving[0].block], ['r1', hex(1)]);
  assert.equal(m.leaving[0].what, 'ann bought a tamarin for 80');
  m.apply({ type: 'pool', node: hex(7), full: true, added: [], removed: [], ready: 0, waiting: 0 },
    200 + LEAVING_MS);
  assert.equal(m.leaving.length, 0, 'the animation ends');
  // A node that reports more than it may is cut to MAX_PENDING.
  const many = Array.from({ length: MAX_PENDING + 10 }, (_, i) => pending('x' + i, i));
  m.apply({ type: 'pool', node: hex(7), full: true, added: many, removed: [], ready: 999, waiting: 0 }, 0);
  assert.equal(m.observed.get(hex(7)).pool.size, MAX_PENDING);
});

test('one live edge per pair that both ends report; one-sided claims apart', () => {
  const m = new Model();
  const ids = [hex(1), hex(2), hex(3)];
  m.apply(snapshot([block(G, G, 0)], G, 0, ids.map((id) => node(id))), 0);
  m.apply({ type: 'peers', node: hex(1), peers: [hex(2), hex(3)] }, 0);
  m.apply({ type: 'peers', node: hex(2), peers: [hex(1)] }, 0);
  const out = m.apply({ type: 'peers', node: hex(3), peers: [] }, 0);
  assert.ok(out.graph);
  const { live, oneSided } = m.edges();
  assert.deepEqual(live, [[hex(1), hex(2)]]);
  assert.deepEqual(oneSided, [[hex(1), hex(3)]]);
  const lots = Array.from({ length: MAX_PEERS + 5 }, (_, i) => hex(100 + i));
  m.apply({ type: 'peers', node: hex(3), peers: lots }, 0);
  assert.equal(m.observed.get(hex(3)).peers.length, MAX_PEERS);
  // A node that leaves the table takes its observations with it.
  m.apply({ type: 'nodes', tracker: { addr: 't', up: true }, nodes: [node(hex(1))] }, 0);
  assert.deepEqual([...m.observed.keys()], [hex(1)]);
});

test('the relay wave: each node\'s delay after the first arrival, for the newest blocks only', () => {
  const m = new Model();
  m.apply(snapshot([block(G, G, 0)], G, 0, [node(hex(1)), node(hex(2))]), 0);
  m.apply({ type: 'arrivals', node: hex(2), blocks: [{ hash: hex(9), received_ms: 1050 }] }, 0);
  m.apply({ type: 'arrivals', node: hex(1), blocks: [{ hash: hex(9), received_ms: 1000 }] }, 0);
  const wave = m.latestWave();
  assert.equal(wave.hash, hex(9));
  assert.equal(wave.delays.get(hex(1)), 0);
  assert.equal(wave.delays.get(hex(2)), 50);
  for (let i = 0; i < MAX_WAVES + 3; i++) {
    m.apply({ type: 'arrivals', node: hex(1), blocks: [{ hash: hex(1000 + i), received_ms: i }] }, 0);
  }
  assert.equal(m.waves.size, MAX_WAVES);
  assert.equal(m.latestWave().hash, hex(1000 + MAX_WAVES + 2));
});

test('block intervals and hash rates from the work of the blocks each node mined', () => {
  const m = new Model();
  const ids = ['a'.repeat(64), 'b'.repeat(64)];
  const miners = [ids[0].slice(0, 8), ids[1].slice(0, 8)];
  const blocks = [block(G, G, 0)];
  for (let h = 1; h <= 10; h++) {
    blocks.push(block(hex(h), h === 1 ? G : hex(h - 1), h, { bits: 10, time: 10000 + 2000 * h,
      miner: miners[h % 2] }));
  }
  m.apply(snapshot(blocks, hex(10), 10, ids.map((id) => node(id))), 0);
  const s = m.series(40000, 60000);
  assert.equal(s.intervals.length, 9, 'one interval per block after block 1 (genesis has a fixed old time)');
  assert.ok(s.intervals.every((i) => i.ms === 2000));
  const rate = s.rates.find((r) => r.id === ids[0]);
  assert.equal(rate.points.length, 5);
  // By its fifth block it mined 5 blocks of 2^10 work within the minute.
  assert.equal(rate.points[4].hashes_per_s, 5 * 1024 / 60);
});

test('records are described in words', () => {
  assert.equal(describe({ kind: 'join', who: 'ann' }), 'ann joined');
  assert.equal(describe({ kind: 'transfer', who: 'ann', to: 'bob', amount: 5 }), 'ann sent 5 to bob');
  assert.equal(describe({ kind: 'vote', who: 'ann', poll: 'p', choice: 'c' }), 'ann voted c in p');
  assert.equal(describe(null), 'unknown record');
});

test('30 nodes and a block a second: applying an update stays cheap', () => {
  const m = new Model();
  const ids = Array.from({ length: 30 }, (_, i) => hex(0x1000 + i));
  m.apply(snapshot([block(G, G, 0)], G, 0, ids.map((id) => node(id))), 0);
  let applied = 0;
  const started = performance.now();
  for (let second = 1; second <= 120; second++) {
    const at = second * 1000;
    m.apply({ type: 'blocks', blocks: [block(hex(second), second === 1 ? G : hex(second - 1), second,
      { time: at, miner: ids[second % 30].slice(0, 8) })] }, at);
    m.apply({ type: 'tip', hash: hex(second), height: second, disconnected: [], connected: [hex(second)] }, at);
    applied += 2;
    for (const id of ids) {
      m.apply({ type: 'load', node: id, sample: { at_ms: at, load: 0.2, difficulty: 9 } }, at);
      m.apply({ type: 'arrivals', node: id, blocks: [{ hash: hex(second), received_ms: at + 3 }] }, at);
      m.apply({ type: 'peers', node: id, peers: ids.slice(0, 8) }, at);
      applied += 3;
    }
    m.series(at, 180000);
    m.edges();
  }
  const perMessage = (performance.now() - started) / applied;
  console.log('model: ' + applied + ' messages, ' + perMessage.toFixed(4) + ' ms each on average');
  assert.ok(perMessage < 2, 'an update takes ' + perMessage + ' ms');
});
