//! `monkey-demo`: a whole Monkeychain network in one process, with the shop in the terminal.
//!
//! It starts a tracker, the nodes and the visualizer as tasks of one runtime ([`network`]), each
//! on a listener bound here and with its data in one demo folder ([`folder`]), sends their logs
//! to files ([`logs`]), prints where everything is, opens the page ([`browser`]), and runs the
//! shop's menus on the main thread. Quitting the shop stops the network. A signal (Ctrl-C while
//! no prompt has the keyboard, SIGTERM, the terminal closing) stops it too: a prompt blocked on
//! the keyboard cannot be woken, so then the thread that stopped the network restores the
//! terminal and ends the process itself, once every daemon has stopped.

mod browser;
mod folder;
mod logs;
mod network;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::folder::Folder;
use crate::network::{Network, Plan};

/// The default difficulty floor. Nodes mine only while a record waits, all of them on the same
/// block, so a block takes 2^floor hashes at the whole machine's rate. Measured on a shared
/// 2-core machine (3 nodes, one mining thread each): each thread did ~14.5 MH/s, ~43 MH/s in
/// all, so 2^25 hashes take ~0.8 s; a join took 1.0 to 1.1 s from the shop to its block on
/// average (20 joins, twice), 0.4 s at 24 bits. A second is slow enough to watch the chain grow
/// and quick enough not to wait on. See the README's "The demo".
const DEFAULT_FLOOR: u32 = 25;
/// The most nodes: they share one machine's cores, so more would not mine faster, only crowd it.
const MAX_NODES: u16 = 16;

/// A whole Monkeychain network in one process: a tracker, nodes and the visualizer, with the
/// shop in this terminal. Quit the shop (Esc) or press Ctrl-C to stop everything.
#[derive(Debug, Parser)]
#[command(name = "monkey-demo", version)]
struct Args {
    /// How many nodes to run, 1 to 16. They share this machine's cores: more nodes do not mine
    /// faster, they show more of a network.
    #[arg(long, env = "MONKEY_DEMO_NODES", value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_NODES)))]
    nodes: u16,
    /// The demo folder: each node's key and chain, the shop's wallet, the logs. Default: a new
    /// folder in the temporary directory, kept and printed. Pass an existing demo folder to
    /// resume its network: the nodes keep their keys and chains.
    #[arg(long, env = "MONKEY_DEMO_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The network's lowest difficulty, in leading zero bits; each bit doubles a block's time.
    /// Default: 25, about a second per block on 2 cores; a resumed folder keeps its own.
    #[arg(long, env = "MONKEY_DEMO_DIFFICULTY_FLOOR", value_name = "BITS",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(protocol::params::MAX_BITS)))]
    difficulty_floor: Option<u32>,
    /// Do not open the page in a browser, only print its address.
    #[arg(long, env = "MONKEY_DEMO_NO_BROWSER")]
    no_browser: bool,
    /// The tracker's address, host:port. Default: 127.0.0.1:7070, or a free port when that one
    /// is taken.
    #[arg(long, env = "MONKEY_DEMO_TRACKER_LISTEN", value_name = "ADDR")]
    tracker_listen: Option<String>,
    /// The page's address, host:port. Default: 127.0.0.1:8080, or a free port when that one is
    /// taken.
    #[arg(long, env = "MONKEY_DEMO_VISUALIZER_LISTEN", value_name = "ADDR")]
    visualizer_listen: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            restore_terminal();
            say(&format!("monkey-demo: error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Prints a line on stdout. A terminal that went away (it was closed) is no reason to stop
/// stopping cleanly, so write errors are ignored.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut folder = Folder::open(args.data_dir.as_deref())?;
    let resumed = folder.resumed();
    let floor = folder.difficulty_floor(args.difficulty_floor, DEFAULT_FLOOR)?;
    logs::init(&folder.logs_dir())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // From here on a signal is ours, not the default that kills: a Ctrl-C while the network
    // starts still stops it cleanly.
    let signals = {
        let _entered = runtime.enter();
        daemon::signals(daemon::Hangup::Stop)?
    };
    let plan = Plan {
        nodes: usize::from(args.nodes),
        difficulty_floor: floor,
        tracker_listen: args.tracker_listen.clone(),
        visualizer_listen: args.visualizer_listen.clone(),
    };
    let network = runtime.block_on(Network::start(&plan, &folder))?;
    let page = format!("http://{}", network.visualizer);
    banner(&folder, resumed, &network, floor, &page);
    if !args.no_browser {
        let _entered = runtime.enter();
        match browser::open(&page) {
            Some(opener) => say(&format!("Opening the page with {opener}.")),
            None => say("Open the page in a browser."),
        }
    }
    if !runtime.block_on(network.ready()) {
        say("Not every node has reached the tracker yet; the shop starts anyway.");
    }

    let tracker = network.tracker.to_string();
    let interactive = std::io::stdin().is_terminal();
    let shop_running = Arc::new(AtomicBool::new(interactive));
    let quit = CancellationToken::new();
    let stopper = {
        let (handle, quit, running) =
            (runtime.handle().clone(), quit.clone(), shop_running.clone());
        let root = folder.root().to_path_buf();
        std::thread::Builder::new()
            .name("stopper".into())
            .spawn(move || stopper(handle, signals, quit, network, running, root))
            .context("cannot start the thread that stops the network")?
    };

    let shop_result = if interactive {
        let config = shop::Config {
            tracker,
            wallet_dir: folder.wallet_dir(),
            node: None,
            answer_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(120),
            floor,
        };
        let shop = shop::Shop::new(&config);
        let result = shop::interactive::run(&shop, &runtime);
        shop_running.store(false, Ordering::SeqCst);
        quit.cancel();
        result.context("the shop failed")
    } else {
        say("No terminal for the shop: the network runs until Ctrl-C or SIGTERM.");
        Ok(())
    };
    let stopped = stopper
        .join()
        .map_err(|_| anyhow::anyhow!("the thread that stops the network panicked"))?;
    // Every daemon has returned; what is left are finished tasks and idle workers.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let result = shop_result.and(stopped);
    goodbye(&folder.root().display().to_string(), result.is_ok());
    result.map(|()| ExitCode::SUCCESS)
}

/// Prints where everything is, before the shop takes the terminal.
fn banner(folder: &Folder, resumed: bool, network: &Network, floor: u32, page: &str) {
    let root = folder.root().display();
    let state = if resumed { "resumed" } else { "new" };
    let moved = |moved: bool, default: &str| {
        if moved {
            format!("  ({default} was taken)")
        } else {
            String::new()
        }
    };
    let mut lines = vec![
        format!("Monkeychain demo {}", env!("CARGO_PKG_VERSION")),
        format!("  folder      {root}  ({state})"),
        format!(
            "  tracker     {}{}",
            network.tracker,
            moved(network.tracker_moved, network::TRACKER_ADDR)
        ),
    ];
    for (i, node) in network.nodes.iter().enumerate() {
        lines.push(format!(
            "  node {:<6} {}  id {}  data {}",
            i + 1,
            node.addr,
            node.id.short(),
            node.dir.display()
        ));
    }
    lines.extend([
        format!(
            "  visualizer  {page}{}",
            moved(network.visualizer_moved, network::VISUALIZER_ADDR)
        ),
        format!(
            "  mining      difficulty floor {floor} bits, {} thread{} per node",
            network.threads,
            if network.threads == 1 { "" } else { "s" }
        ),
        format!("  logs        {}", folder.logs_dir().display()),
        "Quit the shop or press Ctrl-C to stop everything.".into(),
    ]);
    say(&lines.join("\n"));
}

/// The last words: the folder stays, and how to come back to it.
fn goodbye(root: &str, ok: bool) {
    if ok {
        say(&format!(
            "Stopped. The network is kept in {root}; `--data-dir {root}` resumes it."
        ));
    }
}

/// Why the network stops.
enum Why {
    /// The shop quit.
    Quit,
    /// A signal came, by name.
    Signal(&'static str),
    /// A daemon ended by itself.
    Failed,
}

/// Waits for a reason to stop, stops the network, and returns how that went. If the shop is
/// still at a prompt then (a signal, or a daemon that died), nothing can wake it: this thread
/// restores the terminal and ends the process, now that every daemon has stopped.
fn stopper(
    handle: Handle,
    signals: impl Future<Output = &'static str>,
    quit: CancellationToken,
    network: Network,
    shop_running: Arc<AtomicBool>,
    root: PathBuf,
) -> anyhow::Result<()> {
    let failed = network.failed();
    let why = handle.block_on(async {
        tokio::select! {
            () = quit.cancelled() => Why::Quit,
            name = signals => Why::Signal(name),
            () = failed => Why::Failed,
        }
    });
    match why {
        Why::Quit => tracing::info!("the shop quit"),
        Why::Signal(name) => tracing::info!(signal = name, "stopping on a signal"),
        Why::Failed => tracing::error!("a daemon ended early; stopping"),
    }
    let stopped = handle.block_on(network.stop());
    let stopped = match why {
        Why::Failed => stopped.and(Err(anyhow::anyhow!("a daemon ended early (see the logs)"))),
        _ => stopped,
    };
    if !shop_running.load(Ordering::SeqCst) {
        return stopped;
    }
    restore_terminal();
    clear_prompt();
    let code = match &stopped {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("monkey-demo: error: {e:#}"));
            1
        }
    };
    goodbye(&root.display().to_string(), stopped.is_ok());
    std::process::exit(code);
}

/// Leaves the terminal as it was before a prompt: out of raw mode, bracketed paste off, the
/// cursor shown. Harmless when no prompt is up (raw mode is only undone if it was done).
fn restore_terminal() {
    // Nothing else to try if these fail: the terminal is gone or was never ours.
    let _ = crossterm::terminal::disable_raw_mode();
    let mut err = std::io::stderr();
    // The escape inquire's `?2004h` turned bracketed paste on with; crossterm names it only
    // behind a feature.
    let _ = write!(err, "\x1b[?2004l");
    let _ = crossterm::execute!(err, crossterm::cursor::Show);
}

/// Wipes a prompt's menu that a signal left drawn below the cursor, so the last words are not
/// printed over it.
fn clear_prompt() {
    let _ = crossterm::execute!(
        std::io::stderr(),
        crossterm::cursor::MoveToNextLine(1),
        crossterm::terminal::Clear(crossterm::terminal::ClearType::FromCursorDown)
    );
}
