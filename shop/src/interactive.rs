//! The prompt-driven shop: menus (inquire) around the same actions as the subcommands, and a
//! spinner (indicatif) while the network works.
//!
//! First a shopper is chosen from the wallet, or made; then that shopper buys, sends, votes and
//! looks around until they switch or quit. Esc or Ctrl-C at any prompt quits at once; inquire
//! leaves raw mode before it returns, so the terminal is as it was. Ctrl-C while the spinner
//! turns quits too: a record already sent stays pending in the outbox and the next action sends
//! it again. Errors are shown in one line and the menu comes back.

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use inquire::error::InquireError;
use inquire::validator::Validation;
use inquire::{CustomType, Select, Text};
use protocol::catalog::{CATALOG, MONKEY_OF_THE_MONTH, Monkey};
use protocol::record::check_text;
use tokio::runtime::Runtime;

use crate::commands::{Shop, Snapshot};
use crate::network::{Progress, Status};
use crate::outcome::{describe_tally, monkeys};
use crate::wallet::Shopper;

/// Why the menus stopped other than by quitting.
#[derive(Debug, thiserror::Error)]
pub enum InteractiveError {
    /// No terminal to prompt on.
    #[error("the menus need a terminal; in scripts use the subcommands (monkey-shop --help)")]
    NotATerminal,
    /// The terminal failed.
    #[error("terminal error: {0}")]
    Terminal(InquireError),
}

/// Go on, or leave.
enum Flow<T> {
    Go(T),
    Quit,
}

/// Esc and Ctrl-C at a prompt mean quit; anything else that fails is an error.
fn answer<T>(result: Result<T, InquireError>) -> Result<Flow<T>, InteractiveError> {
    match result {
        Ok(value) => Ok(Flow::Go(value)),
        Err(InquireError::OperationCanceled | InquireError::OperationInterrupted) => Ok(Flow::Quit),
        Err(InquireError::NotTTY) => Err(InteractiveError::NotATerminal),
        Err(e) => Err(InteractiveError::Terminal(e)),
    }
}

/// What `?` does for a prompt's answer inside a function returning `Flow`.
macro_rules! ask {
    ($prompt:expr) => {
        match answer($prompt)? {
            Flow::Go(value) => value,
            Flow::Quit => return Ok(Flow::Quit),
        }
    };
}

/// Runs `work` under a spinner; `None` if Ctrl-C came first.
fn spin<T>(
    runtime: &Runtime,
    message: &str,
    work: impl AsyncFnOnce(&dyn Fn(Progress)) -> T,
) -> Option<T> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    let base = message.to_string();
    let report = |p: Progress| bar.set_message(format!("{base}: {}", describe(&p)));
    let out = runtime.block_on(interruptible(work(&report)));
    bar.finish_and_clear();
    out
}

async fn interruptible<T>(work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        value = work => Some(value),
        _ = tokio::signal::ctrl_c() => None,
    }
}

fn describe(p: &Progress) -> String {
    match p {
        Progress::Topology => "asking the tracker".into(),
        Progress::Reading(node) => format!("reading the chain from {node}"),
        Progress::Sending(node) => format!("sending to node {node}"),
        Progress::Accepted(node, Status::Waiting) => {
            format!("node {node} has it, waiting for earlier records")
        }
        Progress::Accepted(node, _) => format!("mining (node {node} has it)"),
        Progress::Retrying(node, why) => format!("node {node} failed ({why}); trying another"),
    }
}

fn interrupted() -> Flow<()> {
    println!(
        "Interrupted. Anything already sent stays pending and goes again with the next action."
    );
    Flow::Quit
}

fn fail(message: impl std::fmt::Display) {
    println!("✗ {message}");
}

/// Runs the menus until the shopper quits.
pub fn run(shop: &Shop, runtime: &Runtime) -> Result<(), InteractiveError> {
    println!(
        "Monkeychain shop · tracker {} · wallet {}",
        shop.network().tracker,
        shop.wallet().dir().display()
    );
    println!("(Esc or Ctrl-C quits)");
    let mut current: Option<Shopper> = None;
    loop {
        let flow = match current.take() {
            None => choose_shopper(shop, runtime)?,
            Some(shopper) => shopper_menu(shop, runtime, shopper)?,
        };
        match flow {
            Flow::Go(next) => current = next,
            Flow::Quit => break,
        }
    }
    println!("Bye.");
    Ok(())
}

/// Reads the chain (no older than what `shoppers` did) under a spinner; errors are shown and
/// give `None`.
fn snapshot(shop: &Shop, runtime: &Runtime, shoppers: &[Shopper]) -> Option<Option<Snapshot>> {
    let result = spin(runtime, "Reading the chain", async |p| {
        shop.snapshot_for(p, shoppers).await
    })?;
    Some(match result {
        Ok(net) => Some(net),
        Err(e) => {
            fail(e);
            None
        }
    })
}

/// The first menu: who is shopping.
fn choose_shopper(
    shop: &Shop,
    runtime: &Runtime,
) -> Result<Flow<Option<Shopper>>, InteractiveError> {
    let shoppers = match shop.wallet().shoppers() {
        Ok(s) => s,
        Err(e) => {
            fail(e);
            Vec::new()
        }
    };
    let Some(net) = snapshot(shop, runtime, &shoppers) else {
        return Ok(interrupted().map_none());
    };
    let mut labels: Vec<String> = shoppers
        .iter()
        .map(|s| {
            let state = net
                .as_ref()
                .and_then(|n| n.chain.ledger.account(&s.account()).cloned());
            match state {
                Some(a) if a.name.is_some() => format!(
                    "{} ({} coins, {})",
                    s.name,
                    a.balance,
                    monkeys(a.cage.values().sum())
                ),
                _ if net.is_some() => format!("{} (not joined yet)", s.name),
                _ => s.name.clone(),
            }
        })
        .collect();
    const CREATE: &str = "Create a new shopper";
    const STATUS: &str = "Network status";
    const QUIT: &str = "Quit";
    labels.extend([CREATE, STATUS, QUIT].map(String::from));
    let choice = ask!(
        Select::new("Who is shopping?", labels)
            .with_page_size(12)
            .raw_prompt()
    );
    if let Some(shopper) = shoppers.get(choice.index) {
        return Ok(Flow::Go(Some(shopper.clone())));
    }
    match choice.value.as_str() {
        CREATE => create_shopper(shop, runtime),
        STATUS => Ok(network_status(shop, runtime).map_none()),
        _ => Ok(Flow::Quit),
    }
}

impl Flow<()> {
    /// The same flow, carrying "no shopper chosen".
    fn map_none<T>(self) -> Flow<Option<T>> {
        match self {
            Flow::Go(()) => Flow::Go(None),
            Flow::Quit => Flow::Quit,
        }
    }
}

fn create_shopper(
    shop: &Shop,
    runtime: &Runtime,
) -> Result<Flow<Option<Shopper>>, InteractiveError> {
    let name = ask!(
        Text::new("Name of the new shopper:")
            .with_validator(|text: &str| {
                Ok(match check_text("name", text.trim()) {
                    Ok(()) => Validation::Valid,
                    Err(e) => Validation::Invalid(e.into()),
                })
            })
            .prompt()
    );
    let Some(result) = spin(runtime, &format!("Joining {name}"), async |p| {
        shop.join(&name, true, p).await
    }) else {
        return Ok(interrupted().map_none());
    };
    match result {
        Ok(outcome) => {
            println!("✔ {outcome}");
            Ok(Flow::Go(
                shop.wallet().find(&outcome.shopper).ok().flatten(),
            ))
        }
        Err(e) => {
            fail(e);
            Ok(Flow::Go(None))
        }
    }
}

/// The shopper's menu; returns the shopper to go on with, or `None` to choose another.
fn shopper_menu(
    shop: &Shop,
    runtime: &Runtime,
    shopper: Shopper,
) -> Result<Flow<Option<Shopper>>, InteractiveError> {
    let Some(net) = snapshot(shop, runtime, std::slice::from_ref(&shopper)) else {
        return Ok(interrupted().map_none());
    };
    let state = net
        .as_ref()
        .and_then(|n| n.chain.ledger.account(&shopper.account()).cloned())
        .unwrap_or_default();
    let header = match &net {
        Some(_) => format!(
            "{}: {} coins, {}. What next?",
            shopper.name,
            state.balance,
            monkeys(state.cage.values().sum())
        ),
        None => format!("{}: what next?", shopper.name),
    };
    const BUY: &str = "Buy a monkey";
    const SEND: &str = "Send coins";
    const VOTE: &str = "Vote for the monkey of the month";
    const CAGE: &str = "My cage and balance";
    const ALL: &str = "All shoppers";
    const STATUS: &str = "Network status";
    const SWITCH: &str = "Switch shopper";
    const QUIT: &str = "Quit";
    let items = [BUY, SEND, VOTE, CAGE, ALL, STATUS, SWITCH, QUIT].map(String::from);
    let choice = ask!(
        Select::new(&header, items.to_vec())
            .with_page_size(12)
            .prompt()
    );
    let flow = match choice.as_str() {
        BUY => buy(shop, runtime, &shopper, state.balance)?,
        SEND => send(shop, runtime, &shopper, net.as_ref(), state.balance)?,
        VOTE => vote(shop, runtime, &shopper, net.as_ref())?,
        CAGE => {
            if let Some(net) = &net {
                match shop.shopper_view(net, &shopper.name) {
                    Ok(view) => println!("{view}"),
                    Err(e) => fail(e),
                }
            }
            Flow::Go(())
        }
        ALL => {
            if let Some(net) = &net {
                println!("{}", shop.shoppers_view(net));
            }
            Flow::Go(())
        }
        STATUS => network_status(shop, runtime),
        SWITCH => return Ok(Flow::Go(None)),
        _ => Flow::Quit,
    };
    Ok(match flow {
        Flow::Go(()) => Flow::Go(Some(shopper)),
        Flow::Quit => Flow::Quit,
    })
}

/// Shows what a record command did, or why not.
/// Prints how a record's wait ended (its outcome, its error, or an interrupt) and what the menu
/// does next.
fn report(
    result: Option<Result<crate::outcome::RecordOutcome, crate::ShopError>>,
) -> Result<Flow<()>, InteractiveError> {
    match result {
        None => return Ok(interrupted()),
        Some(Ok(outcome)) => println!("✔ {outcome}"),
        Some(Err(e)) => fail(e),
    }
    Ok(Flow::Go(()))
}

fn buy(
    shop: &Shop,
    runtime: &Runtime,
    shopper: &Shopper,
    balance: u64,
) -> Result<Flow<()>, InteractiveError> {
    let labels: Vec<String> = CATALOG
        .iter()
        .map(|m| {
            let mark = if m.price > balance {
                "  ✗ cannot afford"
            } else {
                ""
            };
            format!("{:<26} {:>4} coins{mark}", m.name, m.price)
        })
        .collect();
    let question = format!("Which monkey? ({} has {balance} coins)", shopper.name);
    let Some(monkey) = ask!(pick_monkey(&question, labels)) else {
        return Ok(Flow::Go(()));
    };
    report(spin(
        runtime,
        &format!("Buying {}", crate::outcome::a_monkey(monkey.id)),
        async |p| shop.buy(&shopper.name, monkey.id, true, p).await,
    ))
}

/// Asks for a monkey of the catalog, one line of `labels` per monkey in catalog order (the
/// answer shows just its name); `None` for an answer outside the catalog.
fn pick_monkey(
    question: &str,
    labels: Vec<String>,
) -> Result<Option<&'static Monkey>, InquireError> {
    let catalog: &'static [Monkey] = &CATALOG;
    let choice = Select::new(question, labels)
        .with_page_size(12)
        .with_formatter(&|o| {
            catalog
                .get(o.index)
                .map_or_else(String::new, |m| m.name.to_string())
        })
        .raw_prompt()?;
    Ok(catalog.get(choice.index))
}

fn send(
    shop: &Shop,
    runtime: &Runtime,
    shopper: &Shopper,
    net: Option<&Snapshot>,
    balance: u64,
) -> Result<Flow<()>, InteractiveError> {
    let Some(net) = net else {
        return Ok(Flow::Go(()));
    };
    let mut names: Vec<String> = net
        .chain
        .ledger
        .accounts()
        .filter(|(id, _)| **id != shopper.account())
        .filter_map(|(_, a)| a.name.clone())
        .collect();
    names.sort_by_key(|n| n.to_lowercase());
    if names.is_empty() {
        fail("no other shopper has joined yet");
        return Ok(Flow::Go(()));
    }
    let to = ask!(Select::new("Send coins to whom?", names).prompt());
    let help = format!("{} has {balance} coins", shopper.name);
    let amount = ask!(
        CustomType::<u64>::new("How many coins?")
            .with_help_message(&help)
            .with_error_message("a whole number of coins, please")
            .with_validator(|n: &u64| {
                Ok(if *n == 0 {
                    Validation::Invalid("more than zero, please".into())
                } else {
                    Validation::Valid
                })
            })
            .prompt()
    );
    report(spin(
        runtime,
        &format!("Sending {amount} coins to {to}"),
        async |p| shop.send(&shopper.name, &to, amount, true, p).await,
    ))
}

fn vote(
    shop: &Shop,
    runtime: &Runtime,
    shopper: &Shopper,
    net: Option<&Snapshot>,
) -> Result<Flow<()>, InteractiveError> {
    let Some(net) = net else {
        return Ok(Flow::Go(()));
    };
    let ledger = &net.chain.ledger;
    let tally = crate::commands::tally(ledger, MONKEY_OF_THE_MONTH);
    if let Some(choice) = ledger.vote_of(MONKEY_OF_THE_MONTH, &shopper.account()) {
        println!(
            "{} has voted for {choice} already (one vote per shopper). Tally: {}",
            shopper.name,
            describe_tally(&tally)
        );
        return Ok(Flow::Go(()));
    }
    let labels: Vec<String> = CATALOG
        .iter()
        .map(|m| {
            let votes = tally
                .iter()
                .find(|t| t.choice == m.id)
                .map_or(0, |t| t.votes);
            format!("{:<26} {votes} votes", m.name)
        })
        .collect();
    let Some(monkey) = ask!(pick_monkey("Monkey of the month: vote for", labels)) else {
        return Ok(Flow::Go(()));
    };
    report(spin(
        runtime,
        &format!("Voting for {}", monkey.name),
        async |p| {
            shop.vote(&shopper.name, MONKEY_OF_THE_MONTH, monkey.id, true, p)
                .await
        },
    ))
}

fn network_status(shop: &Shop, runtime: &Runtime) -> Flow<()> {
    let Some(result) = spin(runtime, "Asking the network", async |_| shop.status().await) else {
        return interrupted();
    };
    match result {
        Ok(status) => println!("{status}"),
        Err(e) => fail(e),
    }
    Flow::Go(())
}
