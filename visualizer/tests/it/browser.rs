//! End to end in real headless Chromium: a tracker, two nodes and the `monkey-visualizer`
//! binary; the page loads, a shopper with HTML in its name buys a monkey, the block appears on
//! the page, the name shows as text and no dialog opens; the tamper lesson recomputes hashes
//! exactly as the Rust code does; the visualizer restarts and the page reconnects by itself and
//! shows what it missed; a lying node's row says what it sent and why it was refused; a
//! 10,000-block chain opens with only its recent blocks and scrolls back past the visualizer's
//! window, the older blocks paged in from the node and compared with its chain.
//! Screenshots go to `target/visualizer-e2e.png` (the overview),
//! `target/visualizer-e2e-tamper.png` (the tamper lesson) and `target/visualizer-e2e-liar.png`
//! (the network panel with a liar).
//!
//! Without a browser the test says so loudly and passes, except under CI (`CI=true`), where a
//! missing browser fails it: `.ci/run` installs Debian's `chromium`.

use std::path::PathBuf;

use attack::liar::Lie;
use protocol::header::Header;
use protocol::{Action, Block, Record, RecordId, genesis};
use serde_json::{Value, json};
use testkit::*;

use crate::cdp::{Chrome, find_chromium};
use crate::{VisProc, liar_beside};

/// A name that would run script if the page ever parsed names as HTML.
const EVIL: &str = "<img src=x onerror=alert(1)>";

/// Says loudly that a test did not run for want of `what`, and why; under CI that is a failure.
pub(crate) fn did_not_run(what: &str, why: &str) {
    let line = "#".repeat(70);
    let message = format!("\n{line}\n#  {why}\n{line}\n");
    eprintln!("{message}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{message}under CI (CI=true) {what} is a failure"
    );
}

/// The Chromium to test with; without one, says loudly that the browser test did not run
/// (under CI that is a failure) and gives `None`.
pub(crate) fn browser() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        did_not_run(
            "a missing browser",
            "NO CHROMIUM FOUND: the visualizer's browser test did NOT run. Install it \
             (apt-get install chromium) or set CHROMIUM=/path.",
        );
    }
    found
}

/// `target/NAME`, where the screenshots go.
pub(crate) fn output(name: &str) -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map_or(tmp.clone(), |t| t.to_path_buf())
        .join(name)
}

/// A JavaScript string literal for `text`.
pub(crate) fn js(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// A header as the page's hashing code takes it: the nonce as a decimal string.
fn header_json(header: &Header) -> Value {
    let mut value = serde_json::to_value(header).expect("a header serialises");
    value["nonce"] = json!(header.nonce.to_string());
    value
}

/// The block of `chain` that holds record `id`.
fn holding(chain: &[Block], id: RecordId) -> Block {
    chain
        .iter()
        .find(|b| b.records.iter().any(|r| r.id() == id))
        .cloned()
        .expect("a block holds the record")
}

/// Checks the page's SHA-256, header encoding and record id against the Rust code and the
/// vectors of docs/PROTOCOL.md.
async fn check_hashing(chrome: &mut Chrome, record: &Record) {
    let genesis = genesis().header;
    let mut one = protocol::Block::template(
        &genesis,
        Vec::new(),
        key(1).account(),
        8,
        genesis.timestamp + 1000,
    )
    .header;
    one.nonce = 141;
    let expression = format!(
        "(() => {{ const M = MonkeyChain; const g = {}; const b = {}; const r = {}; \
         return [M.blockHash(g), M.hex(M.headerBytes(b)), M.blockHash(b), M.recordId(r), \
         M.hex(M.sha256(new TextEncoder().encode('abc')))]; }})()",
        header_json(&genesis),
        header_json(&one),
        serde_json::to_string(record).expect("a record serialises"),
    );
    let got = chrome.eval(&expression).await;
    let want = json!([
        "a06b1dd94b9d706b0727c251bf406b1499ce115b760026aaa7d506a7afe8091d",
        hex::encode(one.encode()),
        "00cf5c47247cc92d9434c54a23806bce84d528b062eee2be99901b338992cc0d",
        record.id().to_string(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ]);
    assert_eq!(got, want, "the page hashes as the protocol does");
    assert_eq!(genesis.hash().to_string(), want[0]);
    assert_eq!(one.hash().to_string(), want[2]);
}

/// The header of `block` with record `index` changed to buy `monkey` instead (signature kept)
/// and `nonce`.
fn tampered_header(block: &Block, index: usize, monkey: &str, nonce: u64) -> Header {
    let mut records = block.records.clone();
    records[index].action = Action::Purchase {
        monkey: monkey.into(),
    };
    let mut header = block.header.clone();
    header.records_root = protocol::block::records_root(&records);
    header.records_size = records.iter().map(|r| r.encode().len() as u32).sum();
    header.nonce = nonce;
    header
}

fn tile(hash: &str) -> String {
    format!("document.querySelector('.tile[data-hash=\"{hash}\"]')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_appears_live_in_chromium_and_the_tamper_lesson_holds() {
    let Some(chromium) = browser() else { return };
    let net = Network::start(2).await;
    let nodes = &net.nodes;
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let vis = VisProc::start(&net.tracker.addr, "127.0.0.1:0");
    let alice = key(1);
    let mut shop = Client::connect(&nodes[0].addr).await;
    let alice_join = join(&alice, "alice");
    shop.submit_and_wait(alice_join.clone()).await;
    wait_all_agree(&all, &[alice_join.id()]).await;

    let mut chrome = Chrome::launch(&chromium, 1440, 1180).await;
    chrome.navigate(&format!("http://{}/", vis.addr)).await;
    chrome
        .wait_until(
            "the page to be live with its blocks",
            "document.getElementById('conn').dataset.state === 'ok' \
             && document.querySelectorAll('.tile').length >= 2",
        )
        .await;
    chrome
        .wait_until(
            "both nodes followed",
            "document.querySelectorAll('#nodes tr').length === 2 && \
             [...document.querySelectorAll('#nodes tr')].every(r => r.textContent.includes('following'))",
        )
        .await;
    check_hashing(&mut chrome, &alice_join).await;

    // A shopper whose name is HTML buys a monkey, through the other node.
    let evil = key(3);
    let mut other = Client::connect(&nodes[1].addr).await;
    let evil_join = join(&evil, EVIL);
    let purchase = buy(&evil, 1, "capuchin");
    other.submit_and_wait(evil_join.clone()).await;
    other.submit_and_wait(purchase.clone()).await;
    let chain = wait_all_agree(&all, &[evil_join.id(), purchase.id()]).await;
    let bought = holding(&chain, purchase.id());
    let bought_hash = bought.header.hash().to_string();
    let text = chrome
        .wait_until(
            "the purchase's block on the page",
            &format!("({} || {{}}).textContent", tile(&bought_hash)),
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("bought a capuchin for 200"), "{text}");
    assert!(text.contains(EVIL), "the name shows literally: {text}");
    chrome
        .wait_until(
            "the shopper's row, its name as text",
            &format!(
                "[...document.querySelectorAll('#shoppers td.name')].some(td => td.textContent === {})",
                js(EVIL)
            ),
        )
        .await;
    // The only image is the logo: no element came from the name.
    assert_eq!(
        chrome
            .eval("document.querySelectorAll('img:not(#logo), [onerror]').length")
            .await,
        json!(0)
    );

    // A later block, so the tamper lesson has a link to break.
    let vote = Record::sign(
        &alice,
        1,
        Action::Vote {
            poll: "best monkey".into(),
            choice: "capuchin".into(),
        },
    );
    shop.submit_and_wait(vote.clone()).await;
    let chain = wait_all_agree(&all, &[purchase.id(), vote.id()]).await;
    let later = holding(&chain, vote.id()).header.hash().to_string();
    // Two nodes mining at once can fork: a reorg may have put the purchase in another block
    // since, so take the one on the chain the vote's block descends from.
    let bought = holding(&chain, purchase.id());
    let bought_hash = bought.header.hash().to_string();
    chrome
        .wait_until(
            "the purchase and the later block on the page",
            &format!("{} && {}", tile(&bought_hash), tile(&later)),
        )
        .await;

    // The details: the page's own recomputation matches the real hash.
    chrome
        .eval(&format!("{}.click()", tile(&bought_hash)))
        .await;
    let recomputed = chrome
        .wait_until(
            "the details, recomputed in the page",
            "document.getElementById('details').dataset.ready === 'true' \
             && document.getElementById('tamper-out').dataset.match === 'true' \
             && document.getElementById('tamper-out').dataset.hash",
        )
        .await;
    assert_eq!(recomputed, json!(bought_hash));

    // Tamper: the purchase becomes a mandrill. Hash, proof of work and links as Rust says.
    let index = bought
        .records
        .iter()
        .position(|r| r.id() == purchase.id())
        .expect("the purchase is in its block");
    let expected = tampered_header(&bought, index, "mandrill", bought.header.nonce).hash();
    chrome
        .eval("document.getElementById('tamper-toggle').click()")
        .await;
    chrome
        .eval(&format!(
            "(() => {{ const f = document.querySelectorAll('#d-body .record')[{index}]\
             .querySelector('input[data-field=monkey]'); f.value = 'mandrill'; \
             f.dispatchEvent(new Event('input')); }})()"
        ))
        .await;
    let out = chrome
        .wait_until(
            "the tampered hash",
            "(() => { const o = document.getElementById('tamper-out'); \
             return o.dataset.match === 'false' && \
             [o.dataset.hash, o.dataset.pow, document.getElementById('tamper-links').dataset.broken, \
              document.getElementById('tamper-pow').textContent]; })()",
        )
        .await;
    assert_eq!(
        out[0],
        json!(expected.to_string()),
        "the page's tampered hash"
    );
    let pow_holds = expected.leading_zero_bits() >= bought.header.bits;
    assert_eq!(out[1], json!(pow_holds.to_string()));
    if !pow_holds {
        assert!(
            out[3].as_str().unwrap_or_default().contains("fails"),
            "{out}"
        );
    }
    let broken: u64 = out[2].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(broken >= 1, "later blocks are cut off: {out}");
    chrome
        .wait_until(
            "the later block drawn broken",
            &format!("{}.classList.contains('broken')", tile(&later)),
        )
        .await;
    let record_note = chrome
        .eval("document.querySelector('#d-body .record.changed .verdict-line').textContent")
        .await;
    assert!(
        record_note
            .as_str()
            .unwrap_or_default()
            .contains("signature no longer covers"),
        "{record_note}"
    );
    let shot = output("visualizer-e2e-tamper.png");
    chrome.screenshot(&shot).await;
    eprintln!("screenshot of the tamper lesson: {}", shot.display());

    // Re-mining finds a nonce that satisfies the proof of work again, by the Rust code's count
    // too, and the later blocks' links stay broken.
    chrome
        .eval("document.getElementById('tamper-mine').click()")
        .await;
    let found = chrome
        .wait_until(
            "a new nonce",
            "document.getElementById('tamper-out').dataset.pow === 'true' \
             && document.getElementById('tamper-nonce').value",
        )
        .await;
    let nonce: u64 = found
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a decimal nonce, got {found}"));
    let remined = tampered_header(&bought, index, "mandrill", nonce);
    assert!(remined.hash().leading_zero_bits() >= bought.header.bits);
    let page_hash = chrome
        .eval("document.getElementById('tamper-out').dataset.hash")
        .await;
    assert_eq!(page_hash, json!(remined.hash().to_string()));
    assert_eq!(
        chrome
            .eval(&format!("{}.classList.contains('broken')", tile(&later)))
            .await,
        json!(true)
    );
    chrome
        .eval("document.getElementById('d-close').click()")
        .await;
    chrome
        .wait_until(
            "the details closed and the chain whole again",
            &format!(
                "document.getElementById('details').hidden && !{}.classList.contains('broken')",
                tile(&later)
            ),
        )
        .await;
    let shot = output("visualizer-e2e.png");
    chrome.screenshot(&shot).await;
    eprintln!("screenshot of the page: {}", shot.display());

    // The visualizer goes away and comes back: the page reconnects by itself, with what it missed.
    let addr = vis.addr.clone();
    drop(vis);
    chrome
        .wait_until(
            "the page to notice",
            "document.getElementById('conn').dataset.state === 'bad'",
        )
        .await;
    let missed = buy(&alice, 2, "marmoset");
    shop.submit_and_wait(missed.clone()).await;
    wait_all_agree(&all, &[missed.id()]).await;
    let _vis = VisProc::start(&net.tracker.addr, &addr);
    // Not the block the nodes agreed on a moment ago: both may have mined the purchase at that
    // height, and the tie is broken by an empty block on the other one (`tie_break_parent`), so
    // the block that stays may be either. Whichever it is, the page shows it on the best chain.
    chrome
        .wait_until(
            "the page back live with the block it missed",
            "document.getElementById('conn').dataset.state === 'ok' \
             && [...document.querySelectorAll('.tile.best')] \
                .some(t => t.textContent.includes('bought a marmoset'))",
        )
        .await;

    let dialogs = chrome.events_named("Page.javascriptDialogOpening");
    assert!(dialogs.is_empty(), "a dialog opened: {dialogs:?}");
    let exceptions = chrome.events_named("Runtime.exceptionThrown");
    assert!(exceptions.is_empty(), "the page threw: {exceptions:?}");
    let violations: Vec<_> = chrome
        .events_named("Log.entryAdded")
        .into_iter()
        .filter(|e| {
            e["entry"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Content Security Policy"))
        })
        .collect();
    assert!(violations.is_empty(), "policy violations: {violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_block_chain_stays_light_and_scrolls_back_past_the_window_in_chromium() {
    let Some(chromium) = browser() else { return };
    const BLOCKS: usize = 10_000;
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let chain = tokio::task::spawn_blocking(|| mine_chain(&genesis(), BLOCKS, FLOOR, 1000))
        .await
        .expect("mining");
    let mut peer = Client::connect(&node.addr).await;
    for segment in chain.chunks(protocol::params::MAX_BLOCKS_PER_MESSAGE) {
        peer.send(protocol::wire::Message::Blocks(protocol::wire::Blocks {
            blocks: segment.to_vec(),
            more: false,
            packed: false,
        }))
        .await;
    }
    let vis = crate::Visualizer::start(&tracker.addr).await;
    let last = chain[BLOCKS - 1].header.hash().to_string();
    wait_for(
        "the visualizer to hold the whole chain",
        DEADLINE * 4,
        || crate::http::get_details(&vis.addr, &last),
    )
    .await;

    let mut chrome = Chrome::launch(&chromium, 1440, 1000).await;
    chrome.navigate(&format!("http://{}/", vis.addr)).await;
    let snapshot = visualizer::state::SNAPSHOT_BLOCKS;
    let held = chrome
        .wait_until(
            "the snapshot's recent blocks in the page",
            &format!(
                "monkeyVisualizer.state.height === {BLOCKS} && monkeyVisualizer.state.blocks.size"
            ),
        )
        .await;
    assert!(
        held.as_u64().is_some_and(|n| n as usize <= snapshot + 10),
        "a new page gets only the recent blocks, not the chain: {held}"
    );
    // Scroll back to the strip's left end again and again, as a user dragging back would:
    // older pages load below it, down past the visualizer's window, from the node.
    let below_window = BLOCKS - visualizer::state::WINDOW_BLOCKS - 300;
    let reached = chrome
        .wait_until(
            "older blocks, from below the visualizer's window, in the page",
            &format!(
                "(() => {{ const v = monkeyVisualizer; const s = document.getElementById('chain-scroll'); \
                 v.view.follow = false; s.scrollLeft = 0; v.renderChain(); \
                 return v.state.low <= {below_window} && v.state.low; }})()"
            ),
        )
        .await;
    let low = reached.as_u64().expect("the lowest height held") as usize;
    let best = chrome
        .eval(&format!(
            "(() => {{ const v = monkeyVisualizer; const out = []; \
             for (let h = v.state.low; h <= {BLOCKS}; h++) out.push(v.state.best[h] || null); \
             return out; }})()"
        ))
        .await;
    let best: Vec<String> = serde_json::from_value(best).expect("hashes");
    assert_eq!(best.len(), BLOCKS + 1 - low);
    for (i, hash) in best.iter().enumerate() {
        let height = low + i;
        let expected = match height {
            0 => genesis().header.hash(),
            h => chain[h - 1].header.hash(),
        };
        assert_eq!(
            *hash,
            expected.to_string(),
            "the page's block at height {height}"
        );
    }
    // The oldest tiles are drawn, at the strip's left end. Scrolled there and drawn again at
    // each look: the page at the left end may still be loading an older page, and one that
    // lands keeps the view where it was (the tiles it showed stay put), so the block that was
    // oldest a moment ago need not be at the left end any more; the oldest one now must be.
    chrome
        .wait_until(
            "the oldest block's tile, at the strip's left end",
            "(() => { const v = monkeyVisualizer; const s = document.getElementById('chain-scroll'); \
             v.view.follow = false; s.scrollLeft = 0; v.renderChain(); \
             const oldest = v.state.best[v.state.low]; \
             return !!oldest && document.querySelector(`.tile[data-hash=\"${oldest}\"]`) !== null; })()",
        )
        .await;
    // Scroll across what the page holds, rendering each position at once.
    let report = chrome
        .eval(
            "(() => { const v = monkeyVisualizer; const s = document.getElementById('chain-scroll'); \
             const times = []; let most = 0; \
             for (let i = 0; i <= 40; i++) { \
               s.scrollLeft = (s.scrollWidth - s.clientWidth) * i / 40; \
               const t = performance.now(); v.renderChain(); times.push(performance.now() - t); \
               most = Math.max(most, document.querySelectorAll('.tile').length); } \
             times.sort((a, b) => a - b); \
             return [most, times[20], times[40], v.state.snapshotMs, s.scrollWidth]; })()",
        )
        .await;
    eprintln!(
        "10,000 blocks, paged back to height {low}: [most tiles in the DOM, median ms, worst ms, snapshot ms, width px] = {report}"
    );
    let most = report[0].as_u64().unwrap_or(u64::MAX);
    assert!(most <= 30, "only the tiles on screen exist: {report}");
    let median = report[1].as_f64().unwrap_or(f64::MAX);
    assert!(median < 50.0, "a render takes {median} ms: {report}");
    // The tip's tile is there once we follow it again.
    chrome
        .eval("document.getElementById('to-tip').click()")
        .await;
    chrome.wait_until("the tip's tile", &tile(&last)).await;
    let shot = output("visualizer-e2e-10000.png");
    chrome.screenshot(&shot).await;
    vis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_node_is_shown_in_chromium_with_what_it_sent() {
    let Some(chromium) = browser() else { return };
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("honest"));
    let lie = Lie::ZeroWorkFlood {
        blocks: 20,
        records_per_block: 10,
    };
    let liar = liar_beside(&tracker, &node, lie).await;
    let vis = VisProc::start(&tracker.addr, "127.0.0.1:0");
    let mut chrome = Chrome::launch(&chromium, 1440, 1180).await;
    chrome.navigate(&format!("http://{}/", vis.addr)).await;
    let row = chrome
        .wait_until(
            "the liar's row dropped, and what it sent under it",
            &format!(
                "document.querySelector('#nodes tr[data-node=\"{id}\"]').textContent.includes('dropped') \
                 && document.querySelector('#nodes tr[data-misbehaving=\"{id}\"]').textContent",
                id = liar.id
            ),
        )
        .await;
    let row = row.as_str().unwrap_or_default();
    assert!(
        row.contains("misbehaving (once")
            && row.contains("declaring 0 bits of work, with 10 records")
            && row.contains("difficulty 0 is below the floor 8"),
        "{row}"
    );
    let honest = chrome
        .eval(&format!(
            "document.querySelector('#nodes tr[data-misbehaving=\"{}\"]') === null",
            node.id
        ))
        .await;
    assert_eq!(honest, Value::Bool(true), "the honest node is not blamed");
    let shot = output("visualizer-e2e-liar.png");
    chrome.screenshot(&shot).await;
    eprintln!(
        "screenshot of the network panel with a liar: {}",
        shot.display()
    );
    liar.stop().await;
}
