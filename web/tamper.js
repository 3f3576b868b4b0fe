// A block's details in a drawer, and the tamper lesson: edit one of its records and the page
// recomputes (with chain.js, from the canonical bytes) the record's id, the records root, the
// header and the block hash, and shows what breaks: the signature, the proof of work, the link
// from every later block. "Re-mine this block" finds a new nonce, a slice per frame.

import { $, el, clock } from './dom.js';
import { short, describe } from './model.js';

/* global MonkeyChain */

let details = null;
let model = null;
let view = null;
let strip = null;
let open = null; // {hash, data, records, nonce, tampering}
let followBefore = null; // whether the strip followed the tip before the details opened
let mining = null;

/** Wires the drawer to the page's model, view state and strip. */
export function setup(theModel, theView, theStrip) {
  model = theModel;
  view = theView;
  strip = theStrip;
  details = $('details');
  $('d-close').addEventListener('click', closeDetails);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !details.hidden) closeDetails();
  });
}

/** Opens the drawer on a block, fetching its details. */
export async function openDetails(hash) {
  stopMining();
  clearTamper();
  view.selected = hash;
  strip.schedule();
  if (followBefore === null) followBefore = view.follow;
  details.hidden = false;
  details.dataset.hash = hash;
  strip.reveal(hash, details.offsetWidth);
  details.dataset.ready = 'false';
  $('d-title').textContent = 'Block ' + short(hash);
  $('d-body').replaceChildren(el('p', 'empty', 'loading…'));
  let data;
  try {
    const answer = await fetch('/api/block/' + encodeURIComponent(hash));
    if (!answer.ok) throw new Error(answer.status + ' ' + (await answer.text()));
    data = await answer.json();
  } catch (e) {
    $('d-body').replaceChildren(el('p', 'bad-text', 'Could not load the block: ' + e.message));
    return;
  }
  if (details.dataset.hash !== hash) return;
  open = {
    hash,
    data,
    records: data.records.map((r) => ({
      account: r.account,
      seq: r.seq,
      action: Object.assign({}, r.action),
      sig: r.sig,
    })),
    nonce: data.header.nonce,
    tampering: false,
  };
  renderDetails();
  details.dataset.ready = 'true';
}

/** Closes the drawer and forgets the edits. */
export function closeDetails() {
  stopMining();
  details.hidden = true;
  details.dataset.hash = '';
  open = null;
  view.selected = null;
  clearTamper();
  if (followBefore) view.follow = true;
  followBefore = null;
  strip.schedule();
}

function kvTable(rows) {
  const table = el('table', 'kv');
  for (const [key, value] of rows) {
    const tr = el('tr');
    const td = el('td');
    if (value instanceof Node) td.append(value);
    else td.textContent = value;
    tr.append(el('td', null, key), td);
    table.append(tr);
  }
  return table;
}

function hashLink(hash) {
  const a = el('span', 'linkish mono', hash);
  a.addEventListener('click', () => openDetails(hash));
  return a;
}

function renderDetails() {
  const d = open.data;
  const h = d.header;
  const body = $('d-body');
  body.replaceChildren();
  $('d-title').textContent = (h.height === 0 ? 'Genesis' : 'Block #' + h.height) + ' ';
  $('d-title').append(el('span', 'badge' + (d.best ? ' best' : ''), d.best ? 'best chain' : 'side branch'));
  const miner = el('span', 'mono', h.miner);
  if (d.miner_name) miner.append(document.createTextNode(' (' + d.miner_name + ')'));
  const children = el('span');
  for (const c of d.children) {
    children.append(hashLink(c), document.createTextNode(' '));
  }
  body.append(kvTable([
    ['hash', el('span', 'mono', d.hash)],
    ['prev_hash', h.height === 0 ? el('span', 'mono', h.prev_hash) : hashLink(h.prev_hash)],
    ['height', h.height],
    ['bits', h.bits + ' (the hash needs ' + h.bits + ' leading zero bits)'],
    ['nonce', h.nonce],
    ['miner', miner],
    ['timestamp', new Date(h.timestamp).toISOString() + ' (' + h.timestamp + ')'],
    ['records_root', el('span', 'mono', h.records_root)],
    ['records', h.record_count + ' (' + h.records_size + ' bytes)'],
    ['version', h.version],
    ['children', d.children.length ? children : 'none yet'],
  ]));
  if (d.seen.length) {
    body.append(el('h3', null, 'Arrival at each node'));
    body.append(kvTable(d.seen.map((s) => [s.node,
      clock(s.received_ms) + (s.delay_ms ? ' (+' + s.delay_ms + ' ms)' : ' (first)')])));
  }
  body.append(el('h3', null, 'Records'));
  if (open.records.length === 0) body.append(el('p', 'empty', 'No records.'));
  open.records.forEach((r, i) => body.append(recordBox(r, i)));
  body.append(tamperBox());
  updateVerdict();
}

const FIELDS = {
  join: [['name', 'name']],
  purchase: [['monkey', 'monkey']],
  transfer: [['to', 'to'], ['amount', 'amount']],
  vote: [['poll', 'poll'], ['choice', 'choice']],
};

function recordBox(r, i) {
  const original = open.data.records[i];
  const box = el('div', 'record');
  box.dataset.index = i;
  const who = original.who || short(original.account);
  const words = Object.assign({}, r.action, { who, to: original.to_name || short(r.action.to) });
  box.append(el('div', 'what', (i + 1) + '. ' + describe(words)));
  const input = (label, value, onChange, wide) => {
    const wrap = el('label', null, label);
    const field = el('input', wide ? 'wide' : '');
    field.value = value;
    field.disabled = !open.tampering;
    field.dataset.field = label;
    field.spellcheck = false;
    field.addEventListener('input', () => {
      onChange(field.value);
      updateVerdict();
    });
    wrap.append(field);
    box.append(wrap);
  };
  input('seq', String(r.seq), (v) => { r.seq = v; });
  for (const [label, key] of FIELDS[r.action.kind] || []) {
    input(label, String(r.action[key]), (v) => { r.action[key] = v; }, key === 'to');
  }
  box.append(el('div', 'note mono', 'id ' + original.id));
  box.append(el('div', 'note mono', 'signed by ' + original.account));
  box.append(el('div', 'note mono', 'sig ' + original.sig.slice(0, 32) + '…'));
  box.append(el('div', 'note verdict-line'));
  return box;
}

function tamperBox() {
  const box = el('div', 'tamper');
  box.id = 'tamper';
  box.append(el('h3', null, 'Tamper with history'));
  box.append(el('p', null, 'Every hash below is recomputed in this page from the record fields: ' +
    'the records\' canonical bytes, their ids, the records root, the 136-byte header and its ' +
    'SHA-256. Change a record and watch what breaks.'));
  const row = el('div', 'row');
  const toggle = el('button', null, open.tampering ? 'Stop tampering' : 'Edit the records');
  toggle.id = 'tamper-toggle';
  toggle.type = 'button';
  toggle.addEventListener('click', () => {
    open.tampering = !open.tampering;
    if (!open.tampering) resetEdits();
    renderDetails();
  });
  row.append(toggle);
  if (open.tampering) {
    const reset = el('button', null, 'Undo my edits');
    reset.type = 'button';
    reset.addEventListener('click', () => {
      resetEdits();
      renderDetails();
    });
    const nonceLabel = el('label', null, 'nonce ');
    const nonce = el('input');
    nonce.id = 'tamper-nonce';
    nonce.value = open.nonce;
    nonce.addEventListener('input', () => {
      open.nonce = nonce.value;
      updateVerdict();
    });
    nonceLabel.append(nonce);
    const remine = el('button', null, 'Re-mine this block');
    remine.id = 'tamper-mine';
    remine.type = 'button';
    remine.addEventListener('click', remineBlock);
    row.append(reset, nonceLabel, remine);
  }
  box.append(row);
  const out = el('div');
  out.id = 'tamper-out';
  box.append(out);
  return box;
}

function resetEdits() {
  stopMining();
  open.records = open.data.records.map((r) => ({
    account: r.account, seq: r.seq, action: Object.assign({}, r.action), sig: r.sig,
  }));
  open.nonce = open.data.header.nonce;
}

/** Forgets which blocks the tampering broke. */
export function clearTamper() {
  if (view.tampered || view.broken.size) {
    view.tampered = null;
    view.broken = new Set();
    strip.schedule();
  }
}

/** Recomputes the open block from the edited fields and says what holds and what breaks. */
function updateVerdict() {
  if (!open) return;
  const d = open.data;
  const out = $('tamper-out');
  out.replaceChildren();
  const header = Object.assign({}, d.header, { nonce: open.nonce });
  let result;
  try {
    result = MonkeyChain.recompute(header, open.records);
  } catch (e) {
    out.append(el('p', 'bad-text', 'Cannot encode this: ' + e.message));
    return;
  }
  const same = result.hash === d.hash;
  out.dataset.hash = result.hash;
  out.dataset.match = String(same);
  out.dataset.pow = String(result.powOk);
  const hashLine = el('p', 'hashline');
  hashLine.id = 'tamper-hash';
  if (same) {
    hashLine.append(document.createTextNode('block hash ' + result.hash + ' '));
    hashLine.append(el('span', 'ok-text verdict', '✓ matches the hash the nodes agreed on'));
  } else {
    hashLine.append(document.createTextNode('block hash '), el('span', 'old', d.hash),
      document.createTextNode(' → '), el('span', 'bad-text', result.hash));
  }
  out.append(hashLine);
  // Records: which ones changed, and so are no longer covered by their signatures.
  const boxes = document.querySelectorAll('#d-body .record');
  let changed = 0;
  open.records.forEach((r, i) => {
    const box = boxes[i];
    const differs = result.ids[i] !== d.records[i].id;
    if (differs) changed++;
    if (!box) return;
    box.classList.toggle('changed', differs);
    const line = box.querySelector('.verdict-line');
    line.replaceChildren();
    if (differs) {
      line.append(el('span', 'bad-text', '✗ new id ' + short(result.ids[i]) +
        '…: the signature no longer covers this record'));
    }
  });
  if (changed) {
    out.append(el('p', null, 'records_root ' + short(d.header.records_root) + '… → ' +
      short(result.header.records_root) + '… (' + changed + ' record' +
      (changed === 1 ? '' : 's') + ' changed; their signatures no longer cover them)'));
  }
  const pow = el('p', 'verdict');
  pow.id = 'tamper-pow';
  if (d.header.height === 0) {
    pow.append(el('span', same ? 'ok-text' : 'bad-text', same
      ? '✓ genesis needs no proof of work: every node has it built in'
      : '✗ this is no longer the genesis every node has built in'));
  } else {
    pow.append(el('span', result.powOk ? 'ok-text' : 'bad-text', (result.powOk ? '✓' : '✗') +
      ' proof of work: the hash has ' + result.zeros + ' leading zero bits, ' + d.header.bits +
      ' needed' + (result.powOk ? '' : ': it fails')));
  }
  out.append(pow);
  const links = el('p', 'verdict');
  links.id = 'tamper-links';
  const later = model.descendants(d.hash);
  if (same) {
    links.append(el('span', 'ok-text', '✓ ' + (later.size
      ? later.size + ' later block' + (later.size === 1 ? ' links' : 's link') + ' back to it'
      : 'no later block yet')));
    clearTamper();
  } else {
    view.tampered = d.hash;
    view.broken = later;
    strip.schedule();
    links.append(el('span', 'bad-text', later.size
      ? '✗ ' + d.children.length + ' child block' + (d.children.length === 1 ? '' : 's') +
        ' point' + (d.children.length === 1 ? 's' : '') + ' to the old hash: the link breaks, and all ' +
        later.size + ' later block' + (later.size === 1 ? '' : 's') +
        ' would have to be re-mined to hide the change'
      : 'no later block links to it yet: the next block will point to the real one'));
    links.dataset.broken = String(later.size);
  }
  out.append(links);
}

function stopMining() {
  if (mining) {
    clearTimeout(mining);
    mining = null;
  }
}

/** Searches nonces for the edited block, a slice per frame, to show that proof of work can be
 * redone for one block but every later block would need it too. */
function remineBlock() {
  stopMining();
  const d = open.data;
  const bits = Number(d.header.bits);
  const limit = 2 ** Math.min(bits + 4, 30);
  let nonce = 0n;
  let tried = 0;
  const status = el('p', 'verdict', 'mining…');
  status.id = 'tamper-mining';
  $('tamper-out').append(status);
  const step = () => {
    const header = Object.assign({}, d.header, { nonce: nonce.toString() });
    let base;
    try {
      base = MonkeyChain.recompute(header, open.records).header;
    } catch (e) {
      status.textContent = 'Cannot encode this: ' + e.message;
      return;
    }
    const deadline = performance.now() + 30;
    while (performance.now() < deadline && tried < limit) {
      for (let i = 0; i < 500; i++, tried++, nonce++) {
        base.nonce = nonce.toString();
        const hash = MonkeyChain.blockHash(base);
        if (MonkeyChain.leadingZeroBits(hash) >= bits) {
          mining = null;
          open.nonce = nonce.toString();
          const field = $('tamper-nonce');
          if (field) field.value = open.nonce;
          updateVerdict();
          $('tamper-out').append(el('p', null, 'Found nonce ' + open.nonce + ' after ' +
            (tried + 1) + ' tries: this block passes proof of work again, yet its children still ' +
            'point to the old hash. To hide the change, every later block must be re-mined too, ' +
            'faster than the whole network adds new ones.'));
          return;
        }
      }
    }
    if (tried >= limit) {
      status.textContent = 'Gave up after ' + tried + ' tries.';
      mining = null;
      return;
    }
    status.textContent = 'mining… ' + tried + ' nonces tried';
    mining = setTimeout(step, 0);
  };
  mining = setTimeout(step, 0);
}

// For tests and curious visitors: the state and the hashing functions.
