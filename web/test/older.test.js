// Unit tests of the page's paging back (web/model.js): the snapshot holds only recent blocks,
// the model asks for older pages one at a time, takes a page only if it links onto the oldest
// block held, and stops at genesis or at MAX_HELD_BLOCKS. `node --test web/test`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Model, OLDER_PAGE, MAX_HELD_BLOCKS } from '../model.js';

const hex = (n) => n.toString(16).padStart(64, '0');
/** The hash of the block at height h on the test chain (genesis is hex(0)). */
const at = (h) => hex(h);

function block(height) {
  return { hash: at(height), prev: at(Math.max(0, height - 1)), height, bits: 8, nonce: '1',
    miner: 'aaaaaaaa', time: 1000 * height, count: 0, records: [] };
}

function range(from, to) {
  const out = [];
  for (let h = from; h <= to; h++) out.push(block(h));
  return out;
}

const totals = { blocks: 0, side_blocks: 0, records: 0, shoppers: 0, monkeys_sold: 0 };

/** A snapshot of the best chain's heights from..to, as the visualizer sends a long chain's. */
function windowSnapshot(from, to) {
  return { type: 'snapshot', tip: at(to), height: to, blocks: range(from, to),
    tracker: { addr: 't', up: true }, nodes: [], ledger: { totals, shoppers: [], gone: [], polls: [] },
    observed: [] };
}

test('a snapshot of recent blocks starts the strip at its oldest, and older pages link below it', () => {
  const m = new Model();
  m.apply(windowSnapshot(300, 499), 0);
  assert.equal(m.low, 300, 'the oldest block held');
  const ask = m.nextOlder();
  assert.deepEqual(ask, { before: at(300), count: OLDER_PAGE });
  assert.equal(m.nextOlder(), null, 'one page at a time');
  const out = m.applyOlder(ask.before, { blocks: range(200, 299), more: true });
  assert.equal(out.older, 100);
  assert.ok(out.chain);
  assert.equal(m.low, 200);
  assert.equal(m.best[250], at(250));
  assert.equal(m.lane.get(at(250)), 0, 'older blocks are on the best lane');
  // Down to genesis, then nothing more to ask.
  const next = m.nextOlder();
  assert.equal(next.before, at(200));
  m.applyOlder(next.before, { blocks: range(100, 199), more: true });
  const last = m.nextOlder();
  m.applyOlder(last.before, { blocks: range(0, 99), more: false });
  assert.equal(m.low, 0);
  assert.equal(m.nextOlder(), null, 'genesis is held');
  // Charts walk the best chain only down to what is held.
  assert.ok(Array.isArray(m.series(1000 * 499, 60000).intervals));
});

test('a page that does not link onto the oldest block is refused, and may be asked again', () => {
  const m = new Model();
  m.apply(windowSnapshot(300, 499), 0);
  const ask = m.nextOlder();
  const forged = range(200, 299);
  forged[50] = Object.assign(block(250), { hash: hex(0xbad) });
  const out = m.applyOlder(ask.before, { blocks: forged, more: true });
  assert.equal(out.older, 0);
  assert.match(out.log[0].text, /do not link/);
  assert.equal(m.low, 300);
  assert.equal(m.blocks.has(hex(0xbad)), false);
  const gapped = range(200, 298);
  assert.equal(m.applyOlder(m.nextOlder().before, { blocks: gapped, more: true }).older, 0,
    'a page that stops short of the oldest block held is refused');
  // A failed fetch frees the request; a stale answer (for another request) is ignored.
  const again = m.nextOlder();
  m.olderFailed();
  assert.deepEqual(m.nextOlder(), again);
  assert.equal(m.applyOlder(at(999), { blocks: range(200, 299) }).older, 0);
  assert.equal(m.low, 300);
});

test('the page holds at most MAX_HELD_BLOCKS, then asks for no more', () => {
  const m = new Model();
  const top = MAX_HELD_BLOCKS + 1000;
  m.apply(windowSnapshot(top - MAX_HELD_BLOCKS + OLDER_PAGE / 2, top), 0);
  assert.equal(m.nextOlder(), null, 'one more page would pass the bound');
  assert.ok(m.blocks.size <= MAX_HELD_BLOCKS);
});
