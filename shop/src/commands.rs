//! The shop's actions, shared by the subcommands and the menus: join, buy, send, vote, show,
//! catalog, status.
//!
//! An action that changes the chain goes: ask the tracker who is there, read what is new of
//! the chain from the nodes on top of the wallet's chain cache and check it, reconcile the
//! shopper's outbox with it, check the input against the result (so bad input changes
//! nothing), sign the record with the next sequence number, save it in the outbox, send the
//! outbox to a node, and follow the record until it is in a block (or only until a node holds
//! it, with `--no-wait`), reading only the new blocks of the nodes to confirm it. Nothing about
//! shoppers is kept but their keys and their pending records: balances, cages, names and
//! tallies are read from the chain every time.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use protocol::catalog::{CATALOG, MONKEY_OF_THE_MONTH, Monkey};
use protocol::ledger::Undo;
use protocol::name::check_name;
use protocol::record::{RecordFormatError, check_text};
use protocol::tracker::{NodeStatus, Topology};
use protocol::{AccountId, Action, Keypair, Ledger, LedgerError, Record};

use crate::chain::ChainState;
use crate::config::Config;
use crate::error::{Attempt, ShopError};
use crate::network::{MAX_CHAIN_READS, Network, Progress, Reading, Status, SubmitError, Submitted};
use crate::outbox::{self, Outbox};
use crate::outcome::{
    BlockInfo, CatalogOutcome, ChainInfo, NodeRow, PendingRecord, RecordOutcome, ShopperRow,
    ShopperView, ShoppersView, ShowOutcome, StatusOutcome, TallyEntry, a_monkey, doing,
};
use crate::wallet::{Shopper, Wallet};

/// The network as one action sees it: who is there, whom to send to, and the chain.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The tracker's topology.
    pub topology: Topology,
    /// Nodes to send to, in order; the one the chain was read from first.
    pub candidates: Vec<String>,
    /// The best chain read (the most work of those that passed the checks), replayed.
    pub chain: ChainState,
    /// Nodes caught lying (a chain or a block that fails the checks, an answer that contradicts
    /// their own chain): named in the output and skipped for the rest of the command.
    pub liars: Vec<Attempt>,
}

impl Snapshot {
    /// Takes in what a read found: liars leave the candidates; then the preferred node, the
    /// nodes on the best chain, the others, and those that failed, in that order.
    fn take(&mut self, reading: Reading, preferred: Option<&str>) {
        for liar in reading.liars {
            self.candidates.retain(|a| *a != liar.node);
            if !self.liars.iter().any(|l| l.node == liar.node) {
                self.liars.push(liar);
            }
        }
        let tip = self.chain.tip;
        let rank = |addr: &String| {
            if Some(addr.as_str()) == preferred {
                0
            } else if reading
                .chains
                .iter()
                .any(|c| c.source == *addr && c.tip == tip)
            {
                1
            } else if reading.failed.iter().any(|f| f.node == *addr) {
                3
            } else {
                2
            }
        };
        self.candidates.sort_by_key(rank);
    }

    /// The address of the node with id `id`, if the tracker knows it.
    pub fn addr_of(&self, id: &AccountId) -> Option<String> {
        self.topology
            .nodes
            .iter()
            .find(|n| n.id == *id)
            .map(|n| n.addr.clone())
    }

    /// Which chain this is.
    pub fn chain_info(&self) -> ChainInfo {
        ChainInfo::of(&self.chain)
    }
}

/// How many times the nodes' chains are read again when the one read is behind.
const CATCH_UP_ROUNDS: usize = 5;
/// The pause between those reads.
const CATCH_UP_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// How long the shop looks for a second node that holds the block a node announced: blocks
/// reach every node within a second or two, and a block nobody else holds is not trusted.
const CONFIRM_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
/// The first pause between those looks: a block reaches the other nodes within milliseconds,
/// and each look only asks for what is new. The pause doubles up to [`CONFIRM_PAUSE`].
const FIRST_CONFIRM_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);
/// The longest pause between those looks.
const CONFIRM_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// A record signed and saved in the outbox, ready to send.
struct Prepared {
    record: Record,
    outbox: Vec<Record>,
    /// The shopper's state once every pending record and this one apply.
    after: Ledger,
}

/// What checking an announced block found.
enum Checked {
    /// The node that announced it lied: why.
    Lie(String),
    /// Where the record stands, in the best checked chain, and liars met on the way.
    Done {
        status: Status,
        best: Box<ChainState>,
        liars: Vec<Attempt>,
    },
}

/// A shop: a wallet and a network.
#[derive(Debug, Clone)]
pub struct Shop {
    wallet: Wallet,
    network: Network,
    /// The chain every read starts from: the wallet's cache when the command starts, then the
    /// best chain read (`None` until first needed).
    known: Arc<Mutex<Option<ChainState>>>,
    /// Nodes whose chain did not hold the checkpoint a read started from, this session: set
    /// aside while another node agrees with it (see [`Network::read_chains`]).
    off_base: Arc<Mutex<HashSet<String>>>,
}

/// Looks a monkey up by catalog id or display name, ignoring case.
pub fn find_monkey(text: &str) -> Option<&'static Monkey> {
    let wanted = text.trim().to_lowercase();
    CATALOG
        .iter()
        .find(|m| m.id == wanted || m.name.to_lowercase() == wanted)
}

/// Parses a number of coins: a whole number above zero.
pub fn parse_amount(text: &str) -> Result<u64, ShopError> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ShopError::BadAmount(text.to_string())),
    }
}

/// A poll's tally as entries.
pub fn tally(ledger: &Ledger, poll: &str) -> Vec<TallyEntry> {
    ledger
        .tally(poll)
        .into_iter()
        .map(|(choice, votes)| TallyEntry { choice, votes })
        .collect()
}

/// Whether `account` has joined in `ledger`.
fn joined(ledger: &Ledger, account: &AccountId) -> bool {
    ledger.account(account).is_some_and(|a| a.name.is_some())
}

/// Turns a ledger refusal into the shop's message for it.
fn ledger_refusal(name: &str, error: LedgerError, pending: bool, what: String) -> ShopError {
    match error {
        LedgerError::NameTaken(n) => ShopError::NameTaken(n),
        LedgerError::BadName(error) => ShopError::BadName {
            name: name.to_string(),
            error,
        },
        LedgerError::NotJoined => ShopError::NotJoined(name.to_string()),
        LedgerError::AlreadyJoined => ShopError::AlreadyJoined(name.to_string()),
        LedgerError::UnknownMonkey(m) => ShopError::UnknownMonkey(m),
        LedgerError::InsufficientFunds { balance, .. } => ShopError::InsufficientFunds {
            name: name.to_string(),
            balance,
            pending,
            what,
        },
        other => ShopError::Invalid(other.to_string()),
    }
}

/// Turns a format refusal into the shop's message for it.
fn format_refusal(name: &str, error: RecordFormatError) -> ShopError {
    match error {
        RecordFormatError::UnknownMonkey(m) => ShopError::UnknownMonkey(m),
        RecordFormatError::ZeroAmount => ShopError::BadAmount("0".into()),
        RecordFormatError::SelfTransfer => ShopError::SelfTransfer(name.to_string()),
        other => ShopError::BadText(other),
    }
}

impl Shop {
    /// A shop with `config`'s wallet and network.
    pub fn new(config: &Config) -> Shop {
        Shop {
            wallet: Wallet::new(config.wallet_dir.clone()),
            network: Network {
                tracker: config.tracker.clone(),
                preferred: config.node.clone(),
                params: protocol::Params::with_floor(config.floor),
                answer_timeout: config.answer_timeout,
                wait_timeout: config.wait_timeout,
                memory: Some(config.wallet_dir.join("nodes.json")),
            },
            known: Arc::default(),
            off_base: Arc::default(),
        }
    }

    /// The chain reads start from: the best read so far in this command, else the wallet's
    /// cache ([`crate::cache`]), else genesis. A missing or damaged cache is said once (the
    /// chain is then read from genesis, and the cache written again).
    pub async fn base(&self) -> ChainState {
        if let Some(known) = self.known_chain() {
            return known;
        }
        let (dir, params) = (self.wallet.dir().to_path_buf(), self.network.params.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            crate::cache::load(&dir, &params, protocol::clock::now_ms())
        })
        .await;
        let file = crate::cache::path(self.wallet.dir());
        let chain = match loaded {
            Ok(Ok(Some(chain))) => chain,
            Ok(Ok(None)) => {
                tracing::info!(file = %file.display(), "no chain cache yet: reading the chain from genesis");
                ChainState::genesis(String::new())
            }
            Ok(Err(e)) => {
                tracing::warn!(file = %file.display(), "the chain cache is damaged ({e}): reading the chain from genesis and writing it again");
                ChainState::genesis(String::new())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the chain cache: reading the chain from genesis");
                ChainState::genesis(String::new())
            }
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get_or_insert(chain).clone()
    }

    /// The chain reads start from, if one is known yet.
    fn known_chain(&self) -> Option<ChainState> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes `best`, the best chain of a read, as the start of the next read, and writes it to
    /// the wallet's cache when its tip moved. A cache that cannot be written only costs speed.
    fn keep(&self, best: &ChainState) {
        {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            if known.as_ref().is_some_and(|k| k.tip == best.tip) {
                return;
            }
            *known = Some(best.clone());
        }
        if let Err(e) = crate::cache::save(self.wallet.dir(), best, &self.network.params) {
            tracing::warn!(error = %e, "cannot write the chain cache");
        }
    }

    /// Reads and checks the chains of `candidates` (see [`Network::read_chains`]) on top of
    /// [`Shop::base`], and keeps the best.
    pub async fn read_chains(
        &self,
        candidates: &[String],
        max: usize,
        progress: &dyn Fn(Progress),
    ) -> Reading {
        let base = self.base().await;
        let mut off_base = self
            .off_base
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let reading = self
            .network
            .read_chains(candidates, max, progress, &base, &mut off_base)
            .await;
        *self.off_base.lock().unwrap_or_else(|e| e.into_inner()) = off_base;
        if let Some(best) = crate::trust::best(&reading.chains) {
            self.keep(best);
        }
        reading
    }

    /// The wallet.
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// The network settings.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Asks the tracker, picks the nodes, reads the chain.
    pub async fn snapshot(&self, progress: &dyn Fn(Progress)) -> Result<Snapshot, ShopError> {
        self.snapshot_for(progress, &[]).await
    }

    /// The highest chain any of `shoppers` has met (see [`Outbox::seen_height`]).
    pub fn seen_height(&self, shoppers: &[Shopper]) -> u64 {
        shoppers
            .iter()
            .filter_map(|s| outbox::seen_height(&self.wallet, &s.account()).ok())
            .max()
            .unwrap_or(0)
    }

    /// A snapshot no older than what `shoppers` have already seen: a node a little behind (it
    /// has not got the block that holds a shopper's last record yet) is passed over for one
    /// that is up to date, so nobody is shown, or numbers a record against, a stale chain.
    pub async fn snapshot_for(
        &self,
        progress: &dyn Fn(Progress),
        shoppers: &[Shopper],
    ) -> Result<Snapshot, ShopError> {
        let mut net = self.fresh_snapshot(progress).await?;
        let wanted = self.seen_height(shoppers);
        if net.chain.height < wanted {
            self.catch_up(&mut net, wanted).await;
        }
        Ok(net)
    }

    async fn fresh_snapshot(&self, progress: &dyn Fn(Progress)) -> Result<Snapshot, ShopError> {
        progress(Progress::Topology);
        let topology = self.network.nodes().await?;
        let candidates = self.network.candidates(&topology)?;
        let reading = self
            .read_chains(&candidates, MAX_CHAIN_READS, progress)
            .await;
        let Some(chain) = crate::trust::best(&reading.chains).cloned() else {
            let mut tried = reading.liars;
            tried.extend(reading.failed);
            return Err(ShopError::NoChain(tried));
        };
        let mut net = Snapshot {
            topology,
            candidates,
            chain,
            liars: Vec::new(),
        };
        net.take(reading, self.network.preferred.as_deref());
        Ok(net)
    }

    /// The wallet's shopper called `name`.
    pub fn shopper(&self, name: &str) -> Result<Shopper, ShopError> {
        self.wallet
            .find(name)?
            .ok_or_else(|| ShopError::UnknownShopper {
                name: name.to_string(),
                wallet: self.wallet.dir().to_path_buf(),
            })
    }

    /// `join NAME`: makes a key, saves it, and sends the join. A shopper already in the wallet
    /// whose join is not in the chain has it sent again (the same record: signatures are
    /// deterministic), so a join that failed can simply be repeated.
    pub async fn join(
        &self,
        name: &str,
        wait: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<RecordOutcome, ShopError> {
        let name = name.trim();
        check_text("name", name).map_err(ShopError::BadText)?;
        // Before any key is made or record signed: a name that hides characters is refused.
        check_name(name).map_err(|error| ShopError::BadName {
            name: name.to_string(),
            error,
        })?;
        let existing = self.wallet.find(name)?;
        let mut net = self.snapshot_for(progress, existing.as_slice()).await?;
        let (shopper, created) = match existing {
            Some(s) if joined(&net.chain.ledger, &s.account()) => {
                return Err(ShopError::AlreadyJoined(s.name));
            }
            Some(s) => (s, false),
            None => {
                if net.chain.ledger.account_by_name(name).is_some() {
                    return Err(ShopError::NameTaken(name.to_string()));
                }
                let key = Keypair::from_seed(rand::random());
                (self.wallet.create(name, key)?, true)
            }
        };
        let prepared = self
            .prepare(&shopper, &mut net, |overlay, _| {
                if joined(overlay, &shopper.account()) {
                    // Its join is pending: it goes again, nothing new is signed.
                    return Ok(None);
                }
                Ok(Some((
                    Action::Join {
                        name: shopper.name.clone(),
                    },
                    String::new(),
                )))
            })
            .await;
        let result = match prepared {
            Ok(p) => self.deliver(&shopper, &net, p, wait, progress, None).await,
            Err(e) => Err(e),
        };
        // A shopper made just now whose join cannot be had leaves nothing behind.
        if created
            && matches!(
                result,
                Err(ShopError::Refused { .. } | ShopError::NameTaken(_))
            )
        {
            outbox::remove(&self.wallet, &shopper.account())?;
            self.wallet.forget(&shopper)?;
        }
        result
    }

    /// `buy NAME MONKEY`.
    pub async fn buy(
        &self,
        name: &str,
        monkey: &str,
        wait: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<RecordOutcome, ShopError> {
        let shopper = self.shopper(name)?;
        let monkey = find_monkey(monkey).ok_or_else(|| ShopError::UnknownMonkey(monkey.into()))?;
        let mut net = self
            .snapshot_for(progress, std::slice::from_ref(&shopper))
            .await?;
        let prepared = self
            .prepare(&shopper, &mut net, |_, _| {
                Ok(Some((
                    Action::Purchase {
                        monkey: monkey.id.to_string(),
                    },
                    format!("for {} at {} coins", a_monkey(monkey.id), monkey.price),
                )))
            })
            .await?;
        let mut out = self
            .deliver(&shopper, &net, prepared, wait, progress, None)
            .await?;
        out.monkey = Some(*monkey);
        Ok(out)
    }

    /// `send NAME TO AMOUNT`.
    pub async fn send(
        &self,
        name: &str,
        to: &str,
        amount: u64,
        wait: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<RecordOutcome, ShopError> {
        let shopper = self.shopper(name)?;
        if amount == 0 {
            return Err(ShopError::BadAmount("0".into()));
        }
        let mut net = self
            .snapshot_for(progress, std::slice::from_ref(&shopper))
            .await?;
        let recipient = net
            .chain
            .ledger
            .account_by_name(to.trim())
            .ok_or_else(|| ShopError::NotOnChain(to.to_string()))?;
        if recipient == shopper.account() {
            return Err(ShopError::SelfTransfer(shopper.name.clone()));
        }
        let to_name = net
            .chain
            .ledger
            .account(&recipient)
            .and_then(|a| a.name.clone())
            .unwrap_or_else(|| to.to_string());
        let prepared = self
            .prepare(&shopper, &mut net, |_, _| {
                Ok(Some((
                    Action::Transfer {
                        to: recipient,
                        amount,
                    },
                    format!("to send {amount} coins"),
                )))
            })
            .await?;
        let mut out = self
            .deliver(&shopper, &net, prepared, wait, progress, Some(&to_name))
            .await?;
        out.to = Some(to_name);
        out.amount = Some(amount);
        Ok(out)
    }

    /// `vote NAME POLL CHOICE`. In the monkey-of-the-month poll the choice must be a monkey of
    /// the catalog.
    pub async fn vote(
        &self,
        name: &str,
        poll: &str,
        choice: &str,
        wait: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<RecordOutcome, ShopError> {
        let shopper = self.shopper(name)?;
        let poll = poll.trim().to_string();
        let mut choice = choice.trim().to_string();
        check_text("poll", &poll).map_err(ShopError::BadText)?;
        check_text("choice", &choice).map_err(ShopError::BadText)?;
        if poll == MONKEY_OF_THE_MONTH {
            let monkey = find_monkey(&choice).ok_or(ShopError::UnknownMonkey(choice))?;
            choice = monkey.id.to_string();
        }
        let mut net = self
            .snapshot_for(progress, std::slice::from_ref(&shopper))
            .await?;
        let prepared = self
            .prepare(&shopper, &mut net, |overlay, _| {
                if let Some(voted) = overlay.vote_of(&poll, &shopper.account()) {
                    return Err(ShopError::AlreadyVoted {
                        name: shopper.name.clone(),
                        poll: poll.clone(),
                        choice: voted.to_string(),
                    });
                }
                Ok(Some((
                    Action::Vote {
                        poll: poll.clone(),
                        choice: choice.clone(),
                    },
                    String::new(),
                )))
            })
            .await?;
        self.deliver(&shopper, &net, prepared, wait, progress, None)
            .await
    }

    /// Reconciles the outbox, checks the action `make` builds against the shopper's state with
    /// every pending record applied, signs it with the next sequence number and saves it in the
    /// outbox. `make` returns the action and, for a refusal for want of coins, what it was for;
    /// `None` means "nothing new: send what is pending, and follow the first of it".
    async fn prepare(
        &self,
        shopper: &Shopper,
        net: &mut Snapshot,
        make: impl FnOnce(&Ledger, &ChainState) -> Result<Option<(Action, String)>, ShopError>,
    ) -> Result<Prepared, ShopError> {
        let account = shopper.account();
        let mut outbox = Outbox::open(&self.wallet, &account)?;
        if net.chain.height < outbox.seen_height() {
            self.catch_up(net, outbox.seen_height()).await;
        }
        let reconciled = outbox.reconcile(&net.chain)?;
        let overlay = reconciled.overlay;
        let pending = !outbox.records().is_empty();
        let Some((action, what)) = make(&overlay, &net.chain)? else {
            let record = outbox
                .records()
                .first()
                .cloned()
                .ok_or_else(|| ShopError::NotJoined(shopper.name.clone()))?;
            return Ok(Prepared {
                record,
                outbox: outbox.records().to_vec(),
                after: overlay,
            });
        };
        if !matches!(action, Action::Join { .. }) && !joined(&overlay, &account) {
            return Err(ShopError::NotJoined(shopper.name.clone()));
        }
        let record = Record::sign(&shopper.key, overlay.next_seq(&account), action);
        record
            .check()
            .map_err(|e| format_refusal(&shopper.name, e))?;
        let mut after = overlay;
        after
            .apply_record(&record, &mut Undo::default())
            .map_err(|e| ledger_refusal(&shopper.name, e, pending, what))?;
        outbox.push(record.clone());
        outbox.save()?;
        Ok(Prepared {
            record,
            outbox: outbox.records().to_vec(),
            after,
        })
    }

    /// The chain read is lower than one this shopper already met: that node is behind. Reads
    /// the nodes' chains again, a few rounds over a second at most (a node behind catches up in
    /// milliseconds), and keeps the one with the most work of those that pass the checks. The
    /// height met is only ever one of a checked chain, so no node can send the shop chasing a
    /// height it made up.
    async fn catch_up(&self, net: &mut Snapshot, wanted: u64) {
        tracing::info!(node = %net.chain.source, height = net.chain.height, wanted, "node is behind; reading others");
        for round in 0..CATCH_UP_ROUNDS {
            if round > 0 {
                tokio::time::sleep(CATCH_UP_PAUSE).await;
            }
            let reading = self
                .read_chains(&net.candidates, net.candidates.len(), &|_| {})
                .await;
            if let Some(best) = crate::trust::best(&reading.chains)
                && best.work > net.chain.work
            {
                net.chain = best.clone();
            }
            net.take(reading, self.network.preferred.as_deref());
            if net.chain.height >= wanted {
                break;
            }
        }
    }

    /// Sends the outbox and follows the new record; keeps the outbox in step with the answer.
    async fn deliver(
        &self,
        shopper: &Shopper,
        net: &Snapshot,
        prepared: Prepared,
        wait: bool,
        progress: &dyn Fn(Progress),
        to: Option<&str>,
    ) -> Result<RecordOutcome, ShopError> {
        let Prepared {
            record,
            outbox: to_send,
            after,
        } = prepared;
        let account = shopper.account();
        let id = record.id();
        let mut candidates = net.candidates.clone();
        let mut liars = net.liars.clone();
        let mut checked: Option<(Submitted, Status, Option<ChainState>)> = None;
        // Each round either ends or names one more liar and drops it from the candidates.
        for _ in 0..=net.candidates.len() {
            let result = self
                .network
                .submit(&candidates, &to_send, &record, wait, progress)
                .await;
            let submitted = self.submitted(shopper, &record, &to_send, to, result)?;
            let Some(block) = submitted.block.clone() else {
                let status = submitted.status;
                checked = Some((submitted, status, None));
                break;
            };
            let mut look = net.clone();
            look.candidates = candidates.clone();
            look.liars = liars.clone();
            match self
                .check_announced(&look, &submitted.node, &block, &id)
                .await
            {
                Checked::Lie(reason) => {
                    tracing::warn!(node = %submitted.node, %reason, "the node lied; sending to another");
                    progress(Progress::Retrying(submitted.node.clone(), reason.clone()));
                    candidates.retain(|a| *a != submitted.node);
                    liars.push(Attempt {
                        node: submitted.node.clone(),
                        error: reason,
                    });
                    if candidates.is_empty() {
                        return Err(ShopError::Unconfirmed {
                            name: shopper.name.clone(),
                            what: doing(&shopper.name, &record.action, to),
                            record: id.short(),
                            node: submitted.node,
                            why: format!("every node lied: {}", Attempt::list(&liars)),
                        });
                    }
                }
                Checked::Done {
                    status,
                    best,
                    liars: more,
                } => {
                    liars.extend(more);
                    checked = Some((submitted, status, Some(*best)));
                    break;
                }
            }
        }
        let Some((submitted, status, best)) = checked else {
            return Err(ShopError::Unconfirmed {
                name: shopper.name.clone(),
                what: doing(&shopper.name, &record.action, to),
                record: id.short(),
                node: String::new(),
                why: format!("every node lied: {}", Attempt::list(&liars)),
            });
        };
        let mut pending = to_send.len();
        let mut state = after;
        let mut block = None;
        if let Some(best) = &best
            && let Some(b) = best.block_of(&id)
            && matches!(status, Status::Mined | Status::OneNode)
        {
            // Everything up to it is in the checked best chain now. The outbox lets go of those
            // records when it next reads a chain that holds them (see `outbox`); the height is
            // noted only once a second node holds the block.
            pending = to_send.iter().filter(|r| r.seq > record.seq).count();
            block = Some(b.clone());
            state = best.ledger.clone();
            if status == Status::Mined {
                let mut outbox = Outbox::open(&self.wallet, &account)?;
                outbox.note_height(best.height);
                outbox.save()?;
            }
        }
        let shopper_state = state.account(&account).cloned().unwrap_or_default();
        let tally = match &record.action {
            Action::Vote { poll, .. } => Some(tally(&state, poll)),
            _ => None,
        };
        Ok(RecordOutcome {
            command: match record.action {
                Action::Join { .. } => "join",
                Action::Purchase { .. } => "buy",
                Action::Transfer { .. } => "send",
                Action::Vote { .. } => "vote",
            },
            shopper: shopper.name.clone(),
            account,
            record: id,
            seq: record.seq,
            action: record.action.clone(),
            status,
            node: submitted.node.clone(),
            block: block.map(|b| BlockInfo {
                miner_addr: net.addr_of(&b.miner),
                height: b.height,
                hash: b.hash,
                miner: b.miner,
            }),
            elapsed_ms: submitted.elapsed.as_millis() as u64,
            tried: submitted.tried,
            liars,
            balance: shopper_state.balance,
            cage: shopper_state.cage,
            pending,
            monkey: None,
            to: None,
            amount: None,
            tally,
        })
    }

    /// Checks a block `taker` announced as holding record `id`: the block itself, then the
    /// taker's own chain, then the other nodes' chains until a second node holds it (or
    /// [`CONFIRM_WITHIN`] passes).
    async fn check_announced(
        &self,
        net: &Snapshot,
        taker: &str,
        block: &protocol::Block,
        id: &protocol::RecordId,
    ) -> Checked {
        let params = &self.network.params;
        if let Some(lie) = crate::trust::announced_lie(block, id, params, None) {
            return Checked::Lie(lie);
        }
        let base = self.base().await;
        // The taker's own chain is read whole even off the checkpoint: it must hold the block.
        let whole = crate::chain::OffBase::FromGenesis;
        let own = match crate::chain::read(taker, self.network.answer_timeout, params, &base, whole)
            .await
        {
            Ok(chain) => Some(chain),
            Err(e) if e.is_lie() => return Checked::Lie(e.to_string()),
            Err(e) => {
                tracing::info!(node = %taker, error = %e, "cannot read the chain back");
                None
            }
        };
        if let Some(lie) = crate::trust::announced_lie(block, id, params, own.as_ref()) {
            return Checked::Lie(lie);
        }
        let others: Vec<String> = net
            .candidates
            .iter()
            .filter(|a| *a != taker)
            .take(MAX_CHAIN_READS)
            .cloned()
            .collect();
        let deadline = tokio::time::Instant::now() + CONFIRM_WITHIN;
        let mut liars = Vec::new();
        let mut pause = FIRST_CONFIRM_PAUSE;
        loop {
            let reading = self.read_chains(&others, others.len(), &|_| {}).await;
            let mut chains: Vec<ChainState> = own.iter().cloned().collect();
            chains.extend(reading.chains);
            for liar in reading.liars {
                if !liars.iter().any(|l: &Attempt| l.node == liar.node) {
                    liars.push(liar);
                }
            }
            // Active: the taker, and every other node that answered with a chain that passed.
            let active = 1 + chains.iter().filter(|c| c.source != taker).count();
            let status = crate::trust::confirm(&chains, taker, id, active);
            if status == Status::Mined
                || others.is_empty()
                || tokio::time::Instant::now() >= deadline
            {
                let best = crate::trust::best(&chains)
                    .cloned()
                    .unwrap_or_else(|| net.chain.clone());
                self.keep(&best);
                return Checked::Done {
                    status,
                    best: Box::new(best),
                    liars,
                };
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CONFIRM_PAUSE);
        }
    }

    /// What `submit` gave, with the outbox kept in step with a refusal: the record taken, or
    /// the shop's error.
    fn submitted(
        &self,
        shopper: &Shopper,
        record: &Record,
        to_send: &[Record],
        to: Option<&str>,
        result: Result<Submitted, SubmitError>,
    ) -> Result<Submitted, ShopError> {
        let account = shopper.account();
        let id = record.id();
        match result {
            Ok(s) => Ok(s),
            Err(SubmitError::Unconfirmed { node, why, .. }) => Err(ShopError::Unconfirmed {
                name: shopper.name.clone(),
                what: doing(&shopper.name, &record.action, to),
                record: id.short(),
                node,
                why,
            }),
            Err(SubmitError::Refused {
                node,
                reason,
                refused,
            }) => {
                // What a node refused, and what was numbered after it, can never be mined.
                let first = to_send
                    .iter()
                    .filter(|r| refused.contains(&r.id()))
                    .map(|r| r.seq)
                    .min()
                    .unwrap_or(record.seq);
                let mut outbox = Outbox::open(&self.wallet, &account)?;
                outbox.retain(|r| r.seq < first);
                outbox.save()?;
                Err(ShopError::Refused { node, reason })
            }
            Err(SubmitError::NotTaken { tried }) => {
                // No node acknowledged it: it is forgotten, so a retry signs the same number
                // again and at most one of the two can ever be mined.
                let mut outbox = Outbox::open(&self.wallet, &account)?;
                outbox.retain(|r| r.id() != id);
                outbox.save()?;
                Err(ShopError::NoNodeTook(tried))
            }
        }
    }

    /// `show [NAME]`: one shopper, or every shopper as a table.
    pub async fn show(&self, name: Option<&str>) -> Result<ShowOutcome, ShopError> {
        // The wallet's shoppers only make sure the chain shown is not behind what they did.
        let mine: Vec<Shopper> = match name {
            Some(name) => self.wallet.find(name).ok().flatten().into_iter().collect(),
            None => self.wallet.shoppers().unwrap_or_default(),
        };
        let net = self.snapshot_for(&|_| {}, &mine).await?;
        match name {
            Some(name) => self.shopper_view(&net, name).map(ShowOutcome::One),
            None => Ok(ShowOutcome::All(self.shoppers_view(&net))),
        }
    }

    /// One shopper as the chain (and, for the wallet's shoppers, the outbox) has it.
    pub fn shopper_view(&self, net: &Snapshot, name: &str) -> Result<ShopperView, ShopError> {
        let ledger = &net.chain.ledger;
        // The wallet only adds pending records: an unreadable wallet does not hide the chain.
        let in_wallet = match self.wallet.find(name) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the wallet");
                None
            }
        };
        let account = match (ledger.account_by_name(name.trim()), &in_wallet) {
            (Some(account), _) => account,
            (None, Some(s)) => s.account(),
            (None, None) => return Err(ShopError::NotOnChain(name.to_string())),
        };
        let state = ledger.account(&account).cloned().unwrap_or_default();
        let pending = match in_wallet.as_ref().filter(|s| s.account() == account) {
            Some(_) => outbox::peek(&self.wallet, &account)?
                .into_iter()
                .filter(|r| net.chain.block_of(&r.id()).is_none() && r.seq >= state.next_seq)
                .map(|r| PendingRecord {
                    record: r.id(),
                    seq: r.seq,
                    action: r.action,
                })
                .collect(),
            None => Vec::new(),
        };
        let votes = ledger
            .polls()
            .into_iter()
            .filter_map(|poll| {
                let choice = ledger.vote_of(&poll, &account)?.to_string();
                Some((poll, choice))
            })
            .collect();
        Ok(ShopperView {
            name: state
                .name
                .clone()
                .or_else(|| in_wallet.as_ref().map(|s| s.name.clone()))
                .unwrap_or_else(|| name.to_string()),
            account,
            joined: state.name.is_some(),
            balance: state.balance,
            monkeys: state.cage.values().sum(),
            cage: state.cage,
            votes,
            pending,
            in_wallet: in_wallet.is_some_and(|s| s.account() == account),
            chain: net.chain_info(),
        })
    }

    /// Every joined shopper, by name, and every poll.
    pub fn shoppers_view(&self, net: &Snapshot) -> ShoppersView {
        let ledger = &net.chain.ledger;
        let mut shoppers: Vec<ShopperRow> = ledger
            .accounts()
            .filter_map(|(id, a)| {
                Some(ShopperRow {
                    name: a.name.clone()?,
                    account: *id,
                    balance: a.balance,
                    monkeys: a.cage.values().sum(),
                    cage: a.cage.clone(),
                })
            })
            .collect();
        shoppers.sort_by_key(|a| a.name.to_lowercase());
        let polls = ledger
            .polls()
            .into_iter()
            .map(|p| {
                let t = tally(ledger, &p);
                (p, t)
            })
            .collect::<BTreeMap<_, _>>();
        ShoppersView {
            chain: net.chain_info(),
            shoppers,
            polls,
        }
    }

    /// `catalog`.
    pub fn catalog(&self) -> CatalogOutcome {
        CatalogOutcome {
            monkeys: CATALOG.to_vec(),
        }
    }

    /// `status`: the tracker's nodes and the chain as one active node has it.
    pub async fn status(&self) -> Result<StatusOutcome, ShopError> {
        let topology = self.network.topology().await?;
        let nodes: Vec<NodeRow> = topology
            .nodes
            .iter()
            .map(|n| NodeRow {
                id: n.id,
                addr: n.addr.clone(),
                status: match n.status {
                    NodeStatus::A => "active",
                    NodeStatus::R => "removed",
                },
                tip_height: n.tip_height,
                difficulty: n.difficulty,
                load: n.load,
                last_seen_ms: n.last_seen_ms,
            })
            .collect();
        let active = topology.active().count();
        let chain = match self.network.candidates(&topology) {
            Ok(candidates) => {
                let reading = self
                    .read_chains(&candidates, MAX_CHAIN_READS, &|_| {})
                    .await;
                crate::trust::best(&reading.chains).map(ChainInfo::of)
            }
            Err(_) => None,
        };
        Ok(StatusOutcome {
            tracker: self.network.tracker.clone(),
            active,
            nodes,
            chain,
        })
    }
}
