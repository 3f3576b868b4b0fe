// The Monkeychain visualizer's page: follows the websocket at /ws (a snapshot, then deltas; see
// "Visualizer websocket" in docs/PROTOCOL.md) and draws the chain, the network, the totals, the
// shoppers and the polls. Block details come from GET /api/block/HASH.
//
// Rules this file keeps:
// - Text from the network is only ever put in the page with textContent (through el()); no
//   HTML is ever parsed from data, so a shopper named <img src=x onerror=alert(1)> shows as that text.
// - The chain strip is virtualised: only the tiles of the heights on screen exist in the DOM,
//   and links are drawn on a canvas for the visible part only, so 10,000 blocks scroll as
//   smoothly as 10.
// - Every delta costs work in proportion to what changed; a snapshot rebuilds everything.
// - The socket reconnects by itself with backoff and the fresh snapshot shows what was missed.
'use strict';

(function () {
  // Geometry of the strip; must match .tile in style.css.
  const TILE_W = 204;
  const TILE_H = 188;
  const GAP_X = 40;
  const GAP_Y = 22;
  const PAD = 14;
  const COL = TILE_W + GAP_X;
  const ROW = TILE_H + GAP_Y;
  const MAX_VISIBLE_LANES = 3;
  const MAX_EVENTS = 60;

  const $ = (id) => document.getElementById(id);

  /** An element with a class and text; the only way data reaches the page. */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function short(hash) {
    return typeof hash === 'string' ? hash.slice(0, 8) : '?';
  }

  function clock(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour12: false });
  }

  /** A record summary (or full record) in words. */
  function describe(r) {
    switch (r.kind) {
      case 'join': return r.who + ' joined';
      case 'purchase': return r.who + ' bought a ' + r.monkey + (r.price ? ' for ' + r.price : '');
      case 'transfer': return r.who + ' sent ' + r.amount + ' to ' + r.to;
      case 'vote': return r.who + ' voted ' + r.choice + ' in ' + r.poll;
      default: return 'unknown record';
    }
  }

  // ---------------------------------------------------------------- state

  const S = {
    blocks: new Map(), // hash -> summary
    byHeight: [], // height -> [hash] in arrival order
    children: new Map(), // hash -> [hash]
    best: [], // height -> hash on the best chain
    lane: new Map(), // hash -> lane (0 = best chain)
    maxLane: 0,
    tip: null,
    height: 0,
    nodes: [],
    tracker: null,
    tipsByHash: new Map(), // hash -> [node short] whose tip it is
    totals: {},
    shoppers: new Map(), // account -> row
    polls: new Map(), // poll -> tally
    fresh: new Map(), // hash -> arrival time, for the arrival glow
    tampered: null, // hash of the block being tampered with, when its hash changed
    broken: new Set(), // descendants of the tampered block
    selected: null,
    live: false, // the socket is open
    seenSnapshot: false, // a snapshot arrived at least once (later ones are reconnections)
  };

  function resetChain() {
    S.blocks.clear();
    S.byHeight = [];
    S.children.clear();
    S.best = [];
    S.lane.clear();
    S.maxLane = 0;
    S.fresh.clear();
  }

  /** Adds a block summary to the tree; false if it was already there. */
  function addBlock(b) {
    if (S.blocks.has(b.hash)) return false;
    S.blocks.set(b.hash, b);
    (S.byHeight[b.height] || (S.byHeight[b.height] = [])).push(b.hash);
    if (b.height > 0) {
      const siblings = S.children.get(b.prev);
      if (siblings) siblings.push(b.hash);
      else S.children.set(b.prev, [b.hash]);
    }
    return true;
  }

  /** The best chain from scratch: the tip, then parent links down to genesis. */
  function walkBest() {
    S.best = [];
    let cursor = S.blocks.get(S.tip);
    while (cursor) {
      S.best[cursor.height] = cursor.hash;
      if (cursor.height === 0) break;
      cursor = S.blocks.get(cursor.prev);
    }
    S.best.length = S.height + 1;
  }

  /** Lanes for heights from..to: the best block in lane 0, side blocks below, each preferring
   * its parent's lane so a branch stays on one row. */
  function layout(from, to) {
    for (let h = Math.max(0, from); h <= to && h < S.byHeight.length; h++) {
      const list = S.byHeight[h];
      if (!list) continue;
      const used = new Set();
      const bestHash = S.best[h];
      if (bestHash && S.blocks.has(bestHash)) {
        S.lane.set(bestHash, 0);
        used.add(0);
      }
      for (const hash of list) {
        if (hash === bestHash) continue;
        const parentLane = S.lane.get(S.blocks.get(hash).prev);
        let lane = parentLane > 0 && !used.has(parentLane) ? parentLane : 1;
        while (used.has(lane)) lane++;
        S.lane.set(hash, lane);
        used.add(lane);
        if (lane > S.maxLane) S.maxLane = lane;
      }
    }
  }

  // ---------------------------------------------------------------- messages

  function onMessage(msg) {
    switch (msg.type) {
      case 'snapshot': applySnapshot(msg); break;
      case 'blocks': applyBlocks(msg.blocks); break;
      case 'tip': applyTip(msg); break;
      case 'nodes': applyNodes(msg.tracker, msg.nodes); break;
      case 'ledger': applyLedger(msg, false); break;
      default: break;
    }
  }

  function applySnapshot(s) {
    const started = performance.now();
    const wasLive = S.seenSnapshot;
    const before = S.height;
    resetChain();
    for (const b of s.blocks) addBlock(b);
    S.tip = s.tip;
    S.height = s.height;
    walkBest();
    layout(0, S.byHeight.length - 1);
    S.shoppers.clear();
    S.polls.clear();
    applyLedger(s.ledger, true);
    applyNodes(s.tracker, s.nodes);
    S.seenSnapshot = true;
    if (S.tampered && !S.blocks.has(S.tampered)) clearTamper();
    if (wasLive) {
      const gained = S.height - before;
      logEvent('Reconnected: snapshot of ' + s.blocks.length + ' blocks' +
        (gained > 0 ? ', ' + gained + ' new on the best chain' : ''), 'info');
    } else {
      logEvent('Connected: ' + s.blocks.length + ' blocks, tip #' + s.height, 'info');
    }
    follow = true;
    S.snapshotMs = Math.round(performance.now() - started);
    scheduleRender();
  }

  function applyBlocks(blocks) {
    let low = Infinity;
    let high = -1;
    const now = performance.now();
    for (const b of blocks) {
      if (!addBlock(b)) continue;
      S.fresh.set(b.hash, now);
      low = Math.min(low, b.height);
      high = Math.max(high, b.height);
      const what = b.count === 0 ? 'no records' : b.count === 1 ? '1 record' : b.count + ' records';
      if (blocks.length <= 3) {
        logEvent('Block #' + b.height + ' ' + short(b.hash) + ' by ' + b.miner + ', ' + what);
      }
    }
    if (blocks.length > 3) logEvent(blocks.length + ' blocks arrived (#' + low + ' to #' + high + ')');
    if (high >= 0) layout(low, high);
    scheduleRender();
  }

  function applyTip(t) {
    let low = Infinity;
    for (const hash of t.disconnected) {
      const b = S.blocks.get(hash);
      if (b) {
        if (S.best[b.height] === hash) S.best[b.height] = undefined;
        low = Math.min(low, b.height);
      }
    }
    let known = true;
    for (const hash of t.connected) {
      const b = S.blocks.get(hash);
      if (!b) {
        known = false;
        continue;
      }
      S.best[b.height] = hash;
      low = Math.min(low, b.height);
    }
    S.tip = t.hash;
    S.height = t.height;
    if (!known) walkBest();
    S.best.length = S.height + 1;
    if (t.disconnected.length > 0) {
      const depth = t.disconnected.length;
      const at = S.height - t.connected.length + 1;
      const text = 'Reorg of depth ' + depth + ' at height ' + at + ': ' + depth +
        (depth === 1 ? ' block left' : ' blocks left') + ' the best chain, ' + t.connected.length +
        ' joined it';
      showBanner(text);
      logEvent(text, 'reorg');
    }
    layout(Number.isFinite(low) ? low : 0, S.byHeight.length - 1);
    recomputeTips();
    scheduleRender();
    renderNodes();
  }

  function applyNodes(tracker, nodes) {
    const before = new Map(S.nodes.map((n) => [n.id, n]));
    S.tracker = tracker;
    S.nodes = nodes;
    if (S.seenSnapshot) {
      for (const n of nodes) {
        const old = before.get(n.id);
        if (!old) logEvent('Node ' + n.short + ' appeared at ' + n.addr, 'info');
        else if (old.link !== n.link && (n.link === 'following' || n.link === 'down')) {
          logEvent('Node ' + n.short + (n.link === 'following' ? ' followed' : ' unreachable'), 'info');
        }
        const offences = (m) => (m ? m.offences : 0);
        if (n.misbehaviour && offences(n.misbehaviour) > offences(old && old.misbehaviour)) {
          logEvent('Node ' + n.short + ' dropped: it sent ' + n.misbehaviour.sent +
            ', refused: ' + n.misbehaviour.why, 'reorg');
        }
      }
      for (const [id, old] of before) {
        if (!nodes.some((n) => n.id === id)) logEvent('Node ' + old.short + ' left', 'info');
      }
    }
    recomputeTips();
    renderNodes();
    renderTracker();
    scheduleRender();
  }

  function applyLedger(l, full) {
    S.totals = l.totals;
    for (const row of l.shoppers) S.shoppers.set(row.account, row);
    for (const account of l.gone) S.shoppers.delete(account);
    for (const p of l.polls) {
      if (p.tally.length === 0) S.polls.delete(p.poll);
      else S.polls.set(p.poll, p.tally);
    }
    renderTotals();
    if (full || l.shoppers.length || l.gone.length) renderShoppers();
    if (full || l.polls.length) renderPolls();
  }

  /** Which nodes sit on which block, for the markers on tiles. */
  function recomputeTips() {
    S.tipsByHash.clear();
    for (const n of S.nodes) {
      if (n.link === 'none' && n.status !== 'A') continue;
      const list = S.tipsByHash.get(n.tip_hash) || [];
      list.push(n);
      S.tipsByHash.set(n.tip_hash, list);
    }
  }

  // ---------------------------------------------------------------- the socket

  let socket = null;
  let backoff = 500;
  let retryTimer = null;

  function connect() {
    clearTimeout(retryTimer);
    setConn('connecting…', 'warn');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    try {
      socket = new WebSocket(scheme + location.host + '/ws');
    } catch (e) {
      retry();
      return;
    }
    socket.onopen = () => {
      backoff = 500;
      setConn('live', 'ok');
      S.live = true;
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
      if (S.live) {
        logEvent('Connection lost' + (event.reason ? ' (' + event.reason + ')' : '') +
          '; reconnecting', 'reorg');
      }
      S.live = false;
      retry();
    };
    socket.onerror = () => {
      // onclose follows and retries.
    };
  }

  function retry() {
    const wait = backoff;
    backoff = Math.min(backoff * 2, 5000);
    setConn('reconnecting in ' + Math.ceil(wait / 1000) + ' s', 'bad');
    retryTimer = setTimeout(connect, wait);
  }

  function setConn(text, kind) {
    const pill = $('conn');
    pill.textContent = text;
    pill.className = 'pill ' + kind;
    pill.dataset.state = kind;
  }

  function renderTracker() {
    const pill = $('tracker');
    if (!S.tracker) return;
    pill.textContent = 'tracker ' + S.tracker.addr + (S.tracker.up ? ' up' : ' unreachable');
    pill.className = 'pill ' + (S.tracker.up ? 'ok' : 'bad');
  }

  let bannerTimer = null;
  function showBanner(text) {
    const banner = $('banner');
    banner.textContent = text;
    banner.hidden = false;
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(() => {
      banner.hidden = true;
    }, 12000);
  }

  function logEvent(text, kind) {
    const list = $('events');
    const item = el('li', kind || '');
    item.append(el('time', null, clock(Date.now())), document.createTextNode(text));
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  // ---------------------------------------------------------------- the chain strip

  const scroller = $('chain-scroll');
  const inner = $('chain-inner');
  const canvas = $('links');
  const view = canvas.parentElement;
  const tiles = new Map(); // hash -> {node, key}
  let follow = true;
  let renderQueued = false;

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderChain();
    });
  }

  function x(height) {
    return PAD + height * COL;
  }

  function y(lane) {
    return PAD + lane * ROW;
  }

  function tileClass(b) {
    let cls = 'tile';
    if (S.best[b.height] === b.hash) cls += ' best';
    else cls += ' side';
    if (S.tampered === b.hash) cls += ' tampered';
    else if (S.broken.has(b.hash)) cls += ' broken';
    if (S.selected === b.hash) cls += ' selected';
    return cls;
  }

  function fillTile(node, b) {
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
    const tips = S.tipsByHash.get(b.hash);
    if (tips) {
      const box = el('div', 't-tips');
      for (const n of tips) {
        box.append(el('span', null, '◆ ' + n.short));
      }
      node.append(box);
    }
  }

  function tipKey(hash) {
    const tips = S.tipsByHash.get(hash);
    return tips ? tips.map((n) => n.short).join(',') : '';
  }

  function renderChain() {
    const lanes = Math.min(S.maxLane + 1, MAX_VISIBLE_LANES);
    const viewHeight = PAD * 2 + lanes * ROW - GAP_Y + 16;
    if (view.style.height !== viewHeight + 'px') view.style.height = viewHeight + 'px';
    const top = Math.max(0, S.byHeight.length - 1);
    inner.style.width = (PAD * 2 + (top + 1) * COL - GAP_X) + 'px';
    inner.style.height = (PAD * 2 + (S.maxLane + 1) * ROW - GAP_Y) + 'px';
    if (follow) {
      const end = inner.offsetWidth - scroller.clientWidth;
      if (Math.abs(scroller.scrollLeft - end) > 1) scroller.scrollLeft = end;
    }
    const left = scroller.scrollLeft;
    const width = scroller.clientWidth;
    const h0 = Math.max(0, Math.floor((left - PAD) / COL) - 1);
    const h1 = Math.min(top, Math.ceil((left + width - PAD) / COL) + 1);
    const keep = new Set();
    const now = performance.now();
    for (let h = h0; h <= h1; h++) {
      for (const hash of S.byHeight[h] || []) {
        const b = S.blocks.get(hash);
        keep.add(hash);
        let tile = tiles.get(hash);
        if (!tile) {
          const node = el('div');
          node.tabIndex = 0;
          node.setAttribute('role', 'button');
          node.dataset.hash = hash;
          node.dataset.height = b.height;
          tile = { node, key: '' };
          tiles.set(hash, tile);
          inner.append(node);
          const arrived = S.fresh.get(hash);
          if (arrived !== undefined && now - arrived < 1500) node.classList.add('fresh');
        }
        const cls = tileClass(b);
        const key = cls + '|' + tipKey(hash);
        const lane = S.lane.get(hash) || 0;
        tile.node.style.left = x(h) + 'px';
        tile.node.style.top = y(lane) + 'px';
        if (tile.key !== key) {
          const fresh = tile.node.classList.contains('fresh');
          tile.node.className = cls + (fresh ? ' fresh' : '');
          fillTile(tile.node, b);
          tile.key = key;
        }
      }
    }
    for (const [hash, tile] of tiles) {
      if (!keep.has(hash)) {
        tile.node.remove();
        tiles.delete(hash);
      }
    }
    drawLinks(h0, h1);
    $('following').textContent = follow ? 'following the tip' : 'scrolled away from the tip';
  }

  function drawLinks(h0, h1) {
    const ratio = window.devicePixelRatio || 1;
    const w = view.clientWidth;
    const h = view.clientHeight;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
      canvas.style.width = w + 'px';
      canvas.style.height = h + 'px';
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const dx = -scroller.scrollLeft;
    const dy = -scroller.scrollTop;
    for (let height = Math.max(1, h0); height <= h1 + 1; height++) {
      for (const hash of S.byHeight[height] || []) {
        const b = S.blocks.get(hash);
        const parent = S.blocks.get(b.prev);
        if (!parent) continue;
        const fromX = x(parent.height) + TILE_W + dx;
        const fromY = y(S.lane.get(parent.hash) || 0) + TILE_H / 2 + dy;
        const toX = x(b.height) + dx;
        const toY = y(S.lane.get(hash) || 0) + TILE_H / 2 + dy;
        const broken = S.broken.has(hash);
        const onBest = S.best[b.height] === hash;
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

  scroller.addEventListener('scroll', () => {
    const end = inner.offsetWidth - scroller.clientWidth;
    follow = scroller.scrollLeft >= end - COL / 2;
    scheduleRender();
  }, { passive: true });
  window.addEventListener('resize', scheduleRender);
  inner.addEventListener('click', (event) => {
    const tile = event.target.closest('.tile');
    if (tile) openDetails(tile.dataset.hash);
  });
  inner.addEventListener('keydown', (event) => {
    const tile = event.target.closest('.tile');
    if (tile && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      openDetails(tile.dataset.hash);
    }
  });
  $('to-tip').addEventListener('click', () => {
    follow = true;
    scheduleRender();
  });
  $('to-genesis').addEventListener('click', () => {
    follow = false;
    scroller.scrollLeft = 0;
    scheduleRender();
  });

  // ---------------------------------------------------------------- panels

  function renderTotals() {
    const t = S.totals;
    $('t-blocks').textContent = t.blocks;
    $('t-side').textContent = t.side_blocks;
    $('t-shoppers').textContent = t.shoppers;
    $('t-monkeys').textContent = t.monkeys_sold;
    $('t-records').textContent = t.records;
  }

  function dot(kind) {
    return el('span', 'dot ' + kind);
  }

  function renderNodes() {
    const body = $('nodes');
    body.replaceChildren();
    for (const n of S.nodes) {
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
      cell(n.load === null ? '–' : Math.round(n.load * 100) + ' %', 'num');
      cell(n.difficulty === null ? '–' : n.difficulty + ' bits', 'num');
      cell(n.delay_ms === null ? '–' : n.delay_ms + ' ms', 'num');
      body.append(tr);
      if (n.misbehaviour) body.append(misbehaviourRow(n));
    }
    $('no-nodes').hidden = S.nodes.length > 0;
  }

  /** The row under a node caught sending an invalid block: what it sent and the rule it broke.
   * Both come from the network, so they are text nodes only. */
  function misbehaviourRow(n) {
    const m = n.misbehaviour;
    const tr = el('tr', 'misbehaving');
    tr.dataset.misbehaving = n.id;
    const td = el('td');
    td.colSpan = 9;
    const times = m.offences === 1 ? 'once' : m.offences + ' times';
    td.append(el('strong', 'bad-text', '⚠ misbehaving (' + times + ', last at ' + clock(m.at_ms) + '): '),
      document.createTextNode('it sent ' + m.sent + '. Refused: '),
      el('span', 'bad-text', m.why),
      document.createTextNode('. Every block is checked against the rules, whoever sends it: ' +
        (n.link === 'dropped' ? 'this node is dropped and not followed for a while.'
          : 'this node was dropped for a while, and is followed again.')));
    tr.append(td);
    return tr;
  }

  function renderShoppers() {
    const body = $('shoppers');
    body.replaceChildren();
    const rows = [...S.shoppers.values()].sort((a, b) =>
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

  function renderPolls() {
    const box = $('polls');
    box.replaceChildren();
    for (const [poll, tally] of [...S.polls.entries()].sort()) {
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
    $('no-polls').hidden = S.polls.size > 0;
  }

  // ---------------------------------------------------------------- details and tampering

  const details = $('details');
  let open = null; // {hash, data, records, nonce, tampering}
  let followBefore = null; // whether the strip followed the tip before the details opened
  let mining = null;

  async function openDetails(hash) {
    stopMining();
    clearTamper();
    S.selected = hash;
    scheduleRender();
    if (followBefore === null) followBefore = follow;
    details.hidden = false;
    details.dataset.hash = hash;
    reveal(hash);
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

  /** Scrolls the strip so the block is not hidden under the details drawer, leaving room on
   * its right for the blocks after it (whose links the tamper lesson breaks). */
  function reveal(hash) {
    const b = S.blocks.get(hash);
    if (!b) return;
    const left = x(b.height);
    const visible = scroller.clientWidth - details.offsetWidth;
    if (left < scroller.scrollLeft || left + TILE_W > scroller.scrollLeft + visible) {
      follow = false;
      scroller.scrollLeft = Math.max(0, left - PAD - COL);
      scheduleRender();
    }
  }

  function closeDetails() {
    stopMining();
    details.hidden = true;
    details.dataset.hash = '';
    open = null;
    S.selected = null;
    clearTamper();
    if (followBefore) follow = true;
    followBefore = null;
    scheduleRender();
  }

  $('d-close').addEventListener('click', closeDetails);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !details.hidden) closeDetails();
  });

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

  /** Every block built on `hash` that the page knows. */
  function descendants(hash) {
    const out = new Set();
    const stack = [hash];
    while (stack.length) {
      for (const child of S.children.get(stack.pop()) || []) {
        if (!out.has(child)) {
          out.add(child);
          stack.push(child);
        }
      }
    }
    return out;
  }

  function clearTamper() {
    if (S.tampered || S.broken.size) {
      S.tampered = null;
      S.broken = new Set();
      scheduleRender();
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
    const later = descendants(d.hash);
    if (same) {
      links.append(el('span', 'ok-text', '✓ ' + (later.size
        ? later.size + ' later block' + (later.size === 1 ? ' links' : 's link') + ' back to it'
        : 'no later block yet')));
      clearTamper();
    } else {
      S.tampered = d.hash;
      S.broken = later;
      scheduleRender();
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
  window.monkeyVisualizer = { state: S, openDetails, closeDetails, renderChain };

  connect();
})();
