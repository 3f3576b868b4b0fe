//! monkey-node: a headless Monkeychain daemon. It reports to the tracker, keeps connections to
//! its peers, relays and syncs blocks and records, mines pending records, keeps the valid chain
//! with the most work, and stores it crash-safely in its data dir.
//!
//! [`Node::open`] loads the store (and takes the data dir's lock); [`Node::run`] serves on an
//! already bound listener until its shutdown token fires, which is what lets tests start a node
//! on port 0.

pub mod actor;
pub mod archive;
pub mod buffers;
pub mod conn;
pub mod events;
pub mod guard;
pub mod handshake;
pub mod identity;
pub mod links;
pub mod load;
pub mod miner;
pub mod observe;
pub mod peers;
pub mod pool_report;
pub mod reporter;
pub mod session;
pub mod socket;
pub mod store;
pub mod turns;
pub mod unindexed;
pub mod verify;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use protocol::handshake::Identity;
use protocol::tracker::Topology;
use protocol::wire::{ErrorCode, ErrorMessage, Message};
use protocol::{AccountId, Chain, Keypair, Params, Pool, PoolLimits};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::actor::{Actor, Command, Mined, Shared, Status};
use crate::conn::Ctx;
use crate::guard::{Guard, Refusal};
use crate::links::Links;
use crate::miner::Miner;
use crate::reporter::Reporter;
use crate::store::{Changes, Checkpoint, LastCheckpoint, RECENT_BLOCKS, Store};
use crate::verify::{SeenBlocks, Verified};
use crate::writer::Writer;
use protocol::clock::now_ms;

/// How long a stopping node waits for its tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// A node's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The tracker's address.
    pub tracker: String,
    /// The address peers and shops reach us at; the listener's address when `None`.
    pub advertise: Option<String>,
    /// Where the store and the key live.
    pub data_dir: PathBuf,
    /// Mining threads.
    pub threads: usize,
    /// The network's difficulty floor.
    pub difficulty_floor: u32,
    /// Most outbound peer connections.
    pub max_peers: usize,
    /// How long an outbound link may deliver no block before its slot may go to another
    /// candidate: [`peers::PEER_ROTATION`] normally, less in tests.
    pub peer_rotation: Duration,
    /// Time between tracker reports; also how often the CPU load is sampled and subscribers
    /// are told the load, the difficulty and the peers (`U` `status`).
    pub report_interval: Duration,
    /// A file of peer ids (hex, one per line) this node refuses to talk to, read again every
    /// second: how tests split a network in two and heal it. `None` in normal use.
    pub refuse_peers_file: Option<PathBuf>,
    /// How long a client or subscriber may stay silent: [`conn::IDLE_TIMEOUT`] normally, less
    /// in tests. A subscriber or a client waiting on a record is sent a keep-alive `Z` halfway.
    pub idle_timeout: Duration,
    /// Most bytes the events in the channel to the connections hold
    /// ([`actor::MAX_EVENT_BYTES`] normally, less in tests).
    pub max_event_bytes: usize,
}

/// A node with its store loaded, ready to run.
pub struct Node {
    config: Config,
    key: Keypair,
    chain: Chain,
    pool: Pool,
    store: Store,
}

impl Node {
    /// Opens the data dir (refusing one in use), loads the key, the chain and the pool.
    pub fn open(config: Config) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let params = Params::with_floor(config.difficulty_floor);
        let started = std::time::Instant::now();
        let (mut store, loaded) = Store::open(&config.data_dir)?;
        let (mut chain, stored_tip) = if loaded.rebuild {
            tracing::info!(
                "the store has no best-chain index and ledger checkpoints yet (an older format, \
                 or a rebuild cut short): rebuilding them from its blocks, once"
            );
            (Chain::new(params.clone()), 0)
        } else {
            let resume = store.resume(&params)?;
            let chain = Chain::resume(params.clone(), resume.block, resume.work, resume.ledger);
            (chain, resume.tip)
        };
        let resumed_at = chain.height();
        // Only the recent blocks stay in memory; older ones are read from the store on demand.
        chain.keep_recent(RECENT_BLOCKS);
        // Side blocks pruned from now on are deleted from the store too.
        chain.log_removed();
        let now = now_ms();
        let (mut inserted, mut refused, mut damaged) = (0, 0, 0);
        // Checkpoints are due again counting from where the load starts: after a rebuild (a
        // damaged checkpoint, an older store) the load writes sound ones on its way.
        let mut last_checkpoint = LastCheckpoint {
            height: resumed_at,
            bytes: 0,
        };
        let mut next = Some((resumed_at + 1, protocol::Hash256::ZERO));
        // Our own store: checked again but for the signatures, on every core, a chunk at a time.
        while let Some(from) = next {
            let (blocks, bad, rest) = store.read_blocks(from)?;
            next = rest;
            damaged += bad;
            inserted += blocks.len();
            for block in verify::check_own(blocks, &params) {
                match block.map(|block| chain.insert_checked(block, now)) {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => refused += 1,
                }
            }
            let checkpoint = Checkpoint::due(&chain, &mut last_checkpoint);
            // Blocks leaving memory are final: in a rebuild, they go into the best-chain index
            // now (the index is believed only once the rebuild completes).
            let trimmed = chain.trim();
            let changes = Changes {
                connected: if loaded.rebuild {
                    trimmed.iter().map(|b| &**b).collect()
                } else {
                    Vec::new()
                },
                checkpoint: checkpoint.as_ref(),
                ..Changes::default()
            };
            store.write(&changes, false)?;
        }
        let key = identity::load_or_create(&config.data_dir)?;
        if loaded.damaged + damaged + refused > 0 {
            tracing::warn!(
                damaged = loaded.damaged + damaged,
                refused,
                "skipped store entries that did not load"
            );
        }
        let mut pool = Pool::new(PoolLimits::default());
        pool.expire(now);
        let stored: Vec<_> = store.pending_ids().copied().collect();
        for record in loaded.pending {
            let _ = pool.add(chain.ledger(), record);
        }
        // Only minable records stay stored: one that waits for others is not kept across a
        // restart (see `protocol::pool`), nor is a side block the chain's caps pruned.
        let stale: Vec<_> = stored.into_iter().filter(|id| !pool.is_ready(id)).collect();
        let pruned = chain.take_removed();
        if !pruned.is_empty() {
            tracing::info!(
                blocks = pruned.len(),
                "deleting pruned side blocks from the store"
            );
        }
        // The best chain in memory is the stored one but for ties between equal tips, which
        // the order of insertion decides: the index is written again from the base.
        let base = chain.at_height(chain.base_height()).cloned();
        let mut recent: Vec<_> = base.iter().cloned().collect();
        if let Some(base) = &base {
            recent.extend(chain.changes_since(&base.hash()).unwrap_or_default().1);
        }
        store.write(
            &Changes {
                remove_blocks: &pruned,
                connected: recent.iter().map(|b| &**b).collect(),
                tip: Some(chain.height()),
                forget: &stale,
                complete: loaded.rebuild,
                ..Changes::default()
            },
            true,
        )?;
        if loaded.rebuild {
            tracing::info!(
                height = chain.height(),
                "rebuilt the store's best-chain index and ledger checkpoints"
            );
        }
        tracing::info!(
            resumed_at, replayed = inserted, stored_tip, height = chain.height(),
            pending = pool.len(), id = %key.account(), ms = started.elapsed().as_millis() as u64,
            "loaded the store"
        );
        Ok(Node {
            config,
            key,
            chain,
            pool,
            store,
        })
    }

    /// The node's id.
    pub fn id(&self) -> AccountId {
        self.key.account()
    }

    /// Serves until `shutdown` fires, then tells the tracker, stops mining, closes connections.
    ///
    /// Everything the node logs, from its tasks and its chain thread too, is inside the span
    /// `run` is called in: a process running several nodes (the demo) tells them apart by it.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Node {
            config,
            key,
            chain,
            pool,
            store,
        } = self;
        let advertise = match &config.advertise {
            Some(a) => a.clone(),
            None => listener.local_addr()?.to_string(),
        };
        // "Every interface" is not an address anyone can reach: peers and shops would dial it
        // and fail, silently. Refuse to start instead.
        if advertise
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_unspecified())
        {
            anyhow::bail!(
                "the node would advertise {advertise}, which nobody can reach: give --advertise \
                 HOST:PORT, the address other machines reach this node at"
            );
        }
        let (commands, command_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(actor::EVENTS);
        let (status_tx, status) = watch::channel(Status {
            height: 0,
            tip: protocol::genesis().header.hash(),
            difficulty: config.difficulty_floor,
            load: 0.0,
        });
        let (topology_tx, topology) = watch::channel(Topology::default());
        let stop_sampler = Arc::new(AtomicBool::new(false));
        let load = load::spawn(Arc::clone(&stop_sampler), config.report_interval);
        let miner_commands = commands.clone();
        let params = Params::with_floor(config.difficulty_floor);
        let miner_params = params.clone();
        let miner = Miner::spawn(config.threads, move |solved| {
            // Checked here, on the mining thread, so the chain thread only attaches it; its
            // records' signatures were verified when the pool admitted them.
            match solved.block.check_own(&miner_params) {
                Ok(block) => {
                    let mined = Mined {
                        job: solved.job,
                        block,
                        hashes: solved.hashes,
                        elapsed: solved.elapsed,
                    };
                    let _ = miner_commands.blocking_send(Command::Mined(mined));
                }
                Err(e) => tracing::error!(error = %e, "mined a block that does not check"),
            }
        })?;
        let verified = Verified::default();
        let seen = SeenBlocks::default();
        let load_for_status = load.clone();
        let writer = Writer::spawn(store, chain.height())?;
        let reader = writer.reader().clone();
        let shared = Shared {
            events: events.clone(),
            status: status_tx.clone(),
            load,
            verified: verified.clone(),
            seen: seen.clone(),
            max_event_bytes: config.max_event_bytes,
        };
        let actor = Actor::new(chain, pool, writer, miner, key.account(), shared);
        let span = tracing::Span::current();
        let actor_thread = std::thread::Builder::new()
            .name("chain".into())
            .spawn(move || span.in_scope(|| actor.run(command_rx)))?;

        let ctx = Ctx {
            commands: commands.clone(),
            events,
            next_conn: Arc::new(AtomicU64::new(1)),
            params,
            guard: Guard::new(config.refuse_peers_file.clone(), config.idle_timeout),
            me: Identity {
                key: key.clone(),
                addr: advertise.clone(),
            },
            verified,
            seen,
            links: Links::default(),
            reader,
            deep_reads: turns::TurnTable::new(archive::MAX_DEEP_READS),
        };
        let tasks = TaskTracker::new();
        let reporter = Reporter {
            tracker: config.tracker.clone(),
            advertise,
            key: key.clone(),
            interval: config.report_interval,
        };
        tasks.spawn(
            reporter
                .run(status, topology_tx, shutdown.clone())
                .in_current_span(),
        );
        tasks.spawn(
            observe::run(
                config.report_interval,
                load_for_status,
                config.difficulty_floor,
                ctx.links.clone(),
                ctx.events.clone(),
                status_tx,
                shutdown.clone(),
            )
            .in_current_span(),
        );
        tasks.spawn(
            peers::run(
                key.account(),
                config.max_peers,
                config.peer_rotation,
                topology,
                ctx.clone(),
                tasks.clone(),
                shutdown.clone(),
            )
            .in_current_span(),
        );
        tasks.spawn(accept(listener, ctx, tasks.clone(), shutdown.clone()).in_current_span());

        shutdown.cancelled().await;
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close in time");
        }
        let _ = commands.send(Command::Shutdown).await;
        stop_sampler.store(true, Ordering::Relaxed);
        // The actor finishes its current command (at most one store write) and returns.
        tokio::task::spawn_blocking(move || actor_thread.join())
            .await
            .ok();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Accepts connections until `cancel`: at most [`guard::MAX_INBOUND`] at once and
/// [`guard::MAX_INBOUND_PER_IP`] from one address (past either, a longest-idle connection is
/// closed to make room: see [`daemon::slots`]), none from a banned address.
async fn accept(listener: TcpListener, ctx: Ctx, tasks: TaskTracker, cancel: CancellationToken) {
    while let Some((stream, addr)) = daemon::accept(&listener, &cancel).await {
        let slot = match ctx.guard.admit(addr.ip(), std::time::Instant::now()) {
            Ok(slot) => slot,
            Err(Refusal::Banned(left)) => {
                let message = format!("banned for {} s more", left.as_secs() + 1);
                refuse(&stream, ErrorCode::Banned, &message);
                continue;
            }
        };
        let (ctx, token) = (ctx.clone(), cancel.child_token());
        tasks.spawn(conn::serve_inbound(stream, ctx, token, slot).in_current_span());
    }
}

/// Tells a refused connection why, without waiting for it: the line is tiny and the socket's
/// buffer empty, so a non-blocking write takes it whole. Dropping the stream closes it.
fn refuse(stream: &TcpStream, code: ErrorCode, message: &str) {
    let error = Message::Error(ErrorMessage::new(code, message));
    if let Ok(line) = protocol::codec::encode_line(&error) {
        // Nothing to do if it fails: the client sees the connection closed either way.
        stream.try_write(line.as_bytes()).ok();
    }
}
