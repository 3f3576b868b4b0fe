//! `monkey-attack`: misbehaves against a node on purpose and prints what the node did.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;
use attack::liar::{Liar, Lie};
use attack::{Attack, Target};
use clap::Parser;

/// Connects to a Monkeychain node and misbehaves on purpose, to show that the node holds.
///
/// Attacks: garbage, endless-line, unfinished-lines, unknown-opcode, bad-json, wrong-shape, bad-hash,
/// missed-difficulty, below-floor, wrong-prev, future-timestamp, bad-signature,
/// replayed-signature, overspend, easier-chain, orphan-flood, idle-connections,
/// duplicate-flood, huge-locator, nonsense-locator, hold-slots, unminable-flood,
/// big-side-blocks, impostor, fake-registrations (these two need --tracker), deep-locators,
/// or all.
///
/// Or `liar`: a lying node that registers with the tracker and answers shops and visualizers
/// with a lie (`--lie fake-mined`, `zero-work-flood`, `forged-pending` or `useless`) until
/// Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "monkey-attack", version, about, long_about)]
struct Args {
    /// The node to attack, `host:port` (every attack but `liar`).
    #[arg(long, env = "MONKEY_ATTACK_NODE")]
    node: Option<String>,
    /// `liar`: the lie, `fake-mined` (a `B` for every record, in a block at `--height` with
    /// `--bits` of work) or `zero-work-flood` (`--blocks` blocks of no work, each holding
    /// `--records-per-block` signed records), `forged-pending` (a pool listing for visualizers
    /// with a record nobody signed) or `useless` (a peer that proves its id, answers keep-alives
    /// and relays nothing).
    #[arg(long, env = "MONKEY_ATTACK_LIE", default_value = "fake-mined")]
    lie: String,
    /// `liar --lie fake-mined`: the height the fake block claims.
    #[arg(long, env = "MONKEY_ATTACK_HEIGHT", default_value_t = 1_000_000_000)]
    height: u64,
    /// `liar --lie fake-mined`: the proof of work the fake block carries.
    #[arg(long, env = "MONKEY_ATTACK_BITS", default_value_t = 0)]
    bits: u32,
    /// `liar --lie zero-work-flood`: how many blocks.
    #[arg(long, env = "MONKEY_ATTACK_BLOCKS", default_value_t = 2000)]
    blocks: usize,
    /// `liar --lie zero-work-flood`: signed records in each block.
    #[arg(long, env = "MONKEY_ATTACK_RECORDS_PER_BLOCK", default_value_t = 1000)]
    records_per_block: usize,
    /// The local address to connect from. Banned addresses are refused for a while, so on one
    /// machine attack from another loopback address than your honest nodes use.
    #[arg(long, env = "MONKEY_ATTACK_FROM", default_value = "127.0.0.2")]
    from: IpAddr,
    /// The network's difficulty floor (blocks meant to pass proof of work are mined at it).
    #[arg(long, env = "MONKEY_ATTACK_FLOOR", default_value_t = protocol::params::DEFAULT_DIFFICULTY_FLOOR)]
    floor: u32,
    /// The tracker's address: for impostor (which ids to claim) and fake-registrations, and
    /// the one `liar` registers with (127.0.0.1:7070 when not given).
    #[arg(long, env = "MONKEY_ATTACK_TRACKER")]
    tracker: Option<String>,
    /// How many blocks, connections, messages or made-up ids a flood sends.
    #[arg(long, env = "MONKEY_ATTACK_COUNT", default_value_t = 300)]
    count: usize,
    /// The attacks to run, by name; `all` for every one.
    #[arg(required = true)]
    attacks: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monkey-attack: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    if args.attacks == ["liar"] {
        return lie(&args).await;
    }
    let node = args
        .node
        .context("--node is required: the node to attack")?;
    let mut attacks = Vec::new();
    for name in &args.attacks {
        if name == "all" {
            attacks.extend(Attack::ALL);
        } else {
            attacks
                .push(Attack::from_name(name).with_context(|| format!("unknown attack {name:?}"))?);
        }
    }
    let target = Target {
        node,
        from: args.from,
        floor: args.floor,
        count: args.count,
        tracker: args.tracker,
    };
    println!(
        "{:<20} {:>6}  {:<28} {:<7} {:<7} {:<6} note",
        "attack", "sent", "node answered", "closed", "served", "banned"
    );
    for attack in attacks {
        let outcome = attack::run(attack, &target)
            .await
            .with_context(|| format!("{} failed", attack.name()))?;
        println!(
            "{:<20} {:>6}  {:<28} {:<7} {:<7} {:<6} {}",
            attack.name(),
            outcome.sent,
            outcome
                .errors
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(","),
            outcome.closed,
            outcome.still_served,
            outcome.banned,
            outcome.note
        );
    }
    Ok(())
}

/// Runs a lying node until Ctrl-C.
async fn lie(args: &Args) -> anyhow::Result<()> {
    let lie = match args.lie.as_str() {
        "fake-mined" => Lie::FakeMined {
            height: args.height,
            bits: args.bits,
        },
        "zero-work-flood" => Lie::ZeroWorkFlood {
            blocks: args.blocks,
            records_per_block: args.records_per_block,
        },
        "forged-pending" => Lie::ForgedPending,
        "useless" => Lie::Useless,
        other => anyhow::bail!(
            "unknown lie {other:?}: fake-mined, zero-work-flood, forged-pending or useless"
        ),
    };
    let tracker = args.tracker.as_deref().unwrap_or("127.0.0.1:7070");
    let liar = Liar::start(tracker, args.from, lie.clone()).await?;
    println!(
        "liar {} listening on {}, registered with {}: {lie:?}",
        liar.id.short(),
        liar.addr,
        tracker
    );
    tokio::signal::ctrl_c().await?;
    liar.stop().await;
    Ok(())
}
