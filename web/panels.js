// The panels under the strip: totals, the network table, the pending records of each node,
// shoppers, polls, the tracker's pill, the event log and the reorg banner. Each render function
// redraws one panel from the model; app.js calls only those a message changed.

import { $, el, clock } from './dom.js';
import { short, describe, LEAVING_MS } from './model.js';

/** Lines kept in the event log. */
const MAX_EVENTS = 60;

export function renderTotals(m) {
  const t = m.totals;
  $('t-blocks').textContent = t.blocks;
  $('t-side').textContent = t.side_blocks;
  $('t-shoppers').textContent = t.shoppers;
  $('t-monkeys').textContent = t.monkeys_sold;
  $('t-records').textContent = t.records;
}

function dot(kind) {
  return el('span', 'dot ' + kind);
}

export function renderNodes(m) {
  const body = $('nodes');
  body.replaceChildren();
  for (const n of m.nodes) {
    const tr = el('tr');
    tr.dataset.node = n.id;
    const cell = (content, cls) => {
      const td = el('td', cls);
      if (content instanceof Node) td.append(content);
      else td.textContent = content;
      tr.append(td);
      return td;
    };
    cell(n.short, 'mono');
    cell(n.addr, 'mono');
    const status = el('span');
    status.append(dot(n.status === 'A' ? 'ok' : n.status === 'R' ? 'bad' : ''),
      document.createTextNode(n.status === 'A' ? 'active' : n.status === 'R' ? 'removed' : 'not listed'));
    cell(status);
    const link = el('span');
    const linkKind = n.link === 'following' ? 'ok'
      : n.link === 'down' || n.link === 'dropped' ? 'bad' : 'warn';
    link.append(dot(linkKind), document.createTextNode(n.link));
    cell(link);
    cell('#' + n.tip_height + ' ' + short(n.tip_hash), 'mono');
    if (!n.on_best) cell('other branch', 'branch');
    else if (n.behind === 0) cell('in sync');
    else cell(n.behind + ' behind', 'lagging');
    // The node's own samples are fresher than the tracker's table.
    const o = m.observed.get(n.id);
    const last = o && o.samples.length ? o.samples[o.samples.length - 1] : null;
    const load = last ? last.load : n.load;
    const difficulty = last ? last.difficulty : n.difficulty;
    cell(load === null || load === undefined ? '–' : Math.round(load * 100) + ' %', 'num');
    cell(difficulty === null || difficulty === undefined ? '–' : difficulty + ' bits', 'num');
    cell(n.delay_ms === null ? '–' : n.delay_ms + ' ms', 'num');
    body.append(tr);
    if (n.misbehaviour) body.append(misbehaviourRow(n));
  }
  $('no-nodes').hidden = m.nodes.length > 0;
}

/** The row under a node caught sending an invalid block: what it sent and the rule it broke.
 * Both come from the network, so they are text nodes only. */
function misbehaviourRow(n) {
  const mis = n.misbehaviour;
  const tr = el('tr', 'misbehaving');
  tr.dataset.misbehaving = n.id;
  const td = el('td');
  td.colSpan = 9;
  const times = mis.offences === 1 ? 'once' : mis.offences + ' times';
  td.append(el('strong', 'bad-text', '⚠ misbehaving (' + times + ', last at ' + clock(mis.at_ms) + '): '),
    document.createTextNode('it sent ' + mis.sent + '. Refused: '),
    el('span', 'bad-text', mis.why),
    document.createTextNode('. Every block is checked against the rules, whoever sends it: ' +
      (n.link === 'dropped' ? 'this node is dropped and not followed for a while.'
        : 'this node was dropped for a while, and is followed again.')));
  tr.append(td);
  return tr;
}

/** Each node's pending records (who, what, since when, waiting for an earlier record), and the
 * records that just left a pool for a block. */
export function renderPool(m, now) {
  const box = $('pool');
  box.replaceChildren();
  let any = false;
  for (const n of m.nodes) {
    const o = m.observed.get(n.id);
    const leaving = m.leaving.filter((l) => l.node === n.id && now - l.at < LEAVING_MS);
    if (!o || (o.pool.size === 0 && leaving.length === 0)) continue;
    any = true;
    const section = el('div', 'pool-node');
    section.dataset.node = n.id;
    const count = o.ready + o.waiting;
    section.append(el('h3', null, 'node ' + n.short + ': ' + count + ' pending' +
      (o.waiting ? ' (' + o.waiting + ' waiting)' : '') +
      (count > o.pool.size ? ', the oldest ' + o.pool.size + ' shown' : '')));
    const list = el('ul', 'pending');
    const entries = [...o.pool.values()].sort((a, b) => a.since_ms - b.since_ms);
    for (const p of entries) {
      const li = el('li', p.waiting ? 'waiting' : 'ready');
      li.dataset.record = p.id;
      li.append(el('span', 'what', describe(p.record)),
        el('span', 'since', ' since ' + clock(p.since_ms) + ' (' +
          Math.max(0, Math.round((now - p.since_ms) / 1000)) + ' s)'));
      if (p.waiting) li.append(el('span', 'tag', 'waiting for an earlier record'));
      list.append(li);
    }
    for (const l of leaving) {
      const b = m.blocks.get(l.block);
      const li = el('li', 'leaving');
      li.dataset.record = l.id;
      li.dataset.block = l.block;
      li.append(el('span', 'what', l.what),
        el('span', 'tag', '→ block ' + (b ? '#' + b.height + ' ' : '') + short(l.block)));
      list.append(li);
    }
    section.append(list);
    box.append(section);
  }
  $('no-pool').hidden = any;
}

export function renderShoppers(m) {
  const body = $('shoppers');
  body.replaceChildren();
  const rows = [...m.shoppers.values()].sort((a, b) =>
    a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
  for (const row of rows) {
    const tr = el('tr');
    tr.append(el('td', 'name', row.name), el('td', 'num', row.balance));
    const cage = Object.entries(row.cage).map(([monkey, n]) => n + '× ' + monkey).join(', ');
    tr.append(el('td', null, cage || 'empty'));
    body.append(tr);
  }
  $('no-shoppers').hidden = rows.length > 0;
}

export function renderPolls(m) {
  const box = $('polls');
  box.replaceChildren();
  for (const [poll, tally] of [...m.polls.entries()].sort()) {
    const section = el('div', 'poll');
    section.append(el('h3', null, poll));
    const most = Math.max(...tally.map((c) => c.votes), 1);
    for (const c of tally) {
      const bar = el('div', 'bar');
      const track = el('div', 'track');
      const fill = el('div', 'fill');
      fill.style.width = (100 * c.votes / most) + '%';
      track.append(fill);
      bar.append(el('span', 'label', c.choice), track, el('span', 'count', c.votes));
      section.append(bar);
    }
    box.append(section);
  }
  $('no-polls').hidden = m.polls.size > 0;
}

export function renderTracker(m) {
  const pill = $('tracker');
  if (!m.tracker) return;
  pill.textContent = 'tracker ' + m.tracker.addr + (m.tracker.up ? ' up' : ' unreachable');
  pill.className = 'pill ' + (m.tracker.up ? 'ok' : 'bad');
}

export function setConn(text, kind) {
  const pill = $('conn');
  pill.textContent = text;
  pill.className = 'pill ' + kind;
  pill.dataset.state = kind;
}

let bannerTimer = null;
export function showBanner(text) {
  const banner = $('banner');
  banner.textContent = text;
  banner.hidden = false;
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(() => {
    banner.hidden = true;
  }, 12000);
}

export function logEvent(text, kind) {
  const list = $('events');
  const item = el('li', kind || '');
  item.append(el('time', null, clock(Date.now())), document.createTextNode(text));
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}
