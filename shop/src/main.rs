//! The `monkey-shop` binary: flags, logging and the runtime; the shop itself is the library.
//! With no subcommand it opens the menus; with one it does that one thing without prompts.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use serde::Serialize;
use shop::commands::parse_amount;
use shop::network::Progress;
use shop::{Config, Shop};

/// The Monkeychain shop: join, buy monkeys, send coins, vote. With no subcommand it opens
/// menus; the subcommands do the same without prompts, for scripts.
#[derive(Debug, Parser)]
#[command(name = "monkey-shop", version)]
struct Args {
    /// The tracker's address.
    #[arg(long, env = "MONKEY_SHOP_TRACKER", default_value = "127.0.0.1:7070")]
    tracker: String,
    /// Where the shoppers' keys are kept (default: monkeychain/wallet in the platform's data
    /// directory, e.g. ~/.local/share).
    #[arg(long, env = "MONKEY_SHOP_WALLET_DIR")]
    wallet_dir: Option<PathBuf>,
    /// A node to send records to (and read the chain from) first, before the tracker's.
    #[arg(long, env = "MONKEY_SHOP_NODE")]
    node: Option<String>,
    /// Seconds a connection or a node's answer may take before the next node is tried.
    #[arg(long, env = "MONKEY_SHOP_ANSWER_TIMEOUT", default_value_t = 10)]
    answer_timeout: u64,
    /// Seconds to wait for a record to be mined.
    #[arg(long, env = "MONKEY_SHOP_WAIT_TIMEOUT", default_value_t = 120)]
    wait_timeout: u64,
    /// The network's difficulty floor (the nodes' --floor): every block the shop reads must
    /// carry at least this much proof of work, or the node that sent it is named as a liar.
    #[arg(long, env = "MONKEY_SHOP_FLOOR", default_value_t = protocol::params::DEFAULT_DIFFICULTY_FLOOR)]
    floor: u32,
    /// Write logs to this file instead of stderr (RUST_LOG sets the level; default warn).
    #[arg(long, env = "MONKEY_SHOP_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true, env = "MONKEY_SHOP_JSON")]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options of the commands that send a record.
#[derive(Debug, ClapArgs)]
struct SendOptions {
    /// Return once a node holds the record, not once it is mined.
    #[arg(long, env = "MONKEY_SHOP_NO_WAIT")]
    no_wait: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a shopper: a key saved in the wallet, and a join that credits 1000 coins.
    Join {
        /// The shopper's name: 1 to 32 characters, unique on the chain ignoring case.
        name: String,
        #[command(flatten)]
        options: SendOptions,
    },
    /// Buy a monkey from the catalog.
    Buy {
        /// The shopper (in the wallet).
        name: String,
        /// The monkey's id or name (see `catalog`).
        monkey: String,
        #[command(flatten)]
        options: SendOptions,
    },
    /// Send coins to another shopper.
    Send {
        /// The shopper (in the wallet).
        name: String,
        /// The recipient's name on the chain.
        to: String,
        /// Coins, more than zero.
        amount: String,
        #[command(flatten)]
        options: SendOptions,
    },
    /// Vote in a poll, once per shopper (the shop's poll is monkey-of-the-month).
    Vote {
        /// The shopper (in the wallet).
        name: String,
        /// The poll.
        poll: String,
        /// The choice (in monkey-of-the-month, a monkey of the catalog).
        choice: String,
        #[command(flatten)]
        options: SendOptions,
    },
    /// One shopper's balance, cage, votes and pending records; or every shopper as a table.
    Show {
        /// The shopper (on the chain or in the wallet); none for everyone.
        name: Option<String>,
    },
    /// The monkeys for sale and their prices.
    Catalog,
    /// The nodes the tracker knows, their tips, and the chain's height.
    Status,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("monkey-shop: error: {first} (monkey-shop --help shows the usage)");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}").replace('\n', " ");
            eprintln!("monkey-shop: error: {text}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(log_file: Option<&PathBuf>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.log_file.as_ref())?;
    let wallet_dir = match args.wallet_dir {
        Some(dir) => dir,
        None => Config::default_wallet_dir()
            .context("this platform has no data directory: pass --wallet-dir")?,
    };
    anyhow::ensure!(
        args.answer_timeout > 0,
        "--answer-timeout must be at least 1"
    );
    anyhow::ensure!(args.wait_timeout > 0, "--wait-timeout must be at least 1");
    let config = Config {
        tracker: args.tracker,
        wallet_dir,
        node: args.node,
        answer_timeout: Duration::from_secs(args.answer_timeout),
        wait_timeout: Duration::from_secs(args.wait_timeout),
        floor: args.floor,
    };
    let shop = Shop::new(&config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = args.json;
    let quiet = |_: Progress| {};
    let Some(command) = args.command else {
        anyhow::ensure!(
            !json,
            "--json goes with a subcommand; the menus are for people"
        );
        shop::interactive::run(&shop, &runtime)?;
        return Ok(());
    };
    match command {
        Command::Join { name, options } => emit(
            json,
            &runtime.block_on(shop.join(&name, !options.no_wait, &quiet))?,
        ),
        Command::Buy {
            name,
            monkey,
            options,
        } => emit(
            json,
            &runtime.block_on(shop.buy(&name, &monkey, !options.no_wait, &quiet))?,
        ),
        Command::Send {
            name,
            to,
            amount,
            options,
        } => {
            let amount = parse_amount(&amount)?;
            emit(
                json,
                &runtime.block_on(shop.send(&name, &to, amount, !options.no_wait, &quiet))?,
            )
        }
        Command::Vote {
            name,
            poll,
            choice,
            options,
        } => emit(
            json,
            &runtime.block_on(shop.vote(&name, &poll, &choice, !options.no_wait, &quiet))?,
        ),
        Command::Show { name } => emit(json, &runtime.block_on(shop.show(name.as_deref()))?),
        Command::Catalog => emit(json, &shop.catalog()),
        Command::Status => emit(json, &runtime.block_on(shop.status())?),
    }
}

/// Prints an outcome as one JSON object or as text. A reader that went away (`| head`) is
/// not an error.
fn emit<T: Serialize + std::fmt::Display>(json: bool, outcome: &T) -> anyhow::Result<()> {
    let text = if json {
        serde_json::to_string(outcome)?
    } else {
        outcome.to_string()
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}
