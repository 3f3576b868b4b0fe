//! `monkey-attack`: misbehaves against a node on purpose and prints what the node did.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;
use attack::{Attack, Target};
use clap::Parser;

/// Connects to a Monkeychain node and misbehaves on purpose, to show that the node holds.
///
/// Attacks: garbage, endless-line, unknown-opcode, bad-json, wrong-shape, bad-hash,
/// missed-difficulty, below-floor, wrong-prev, future-timestamp, bad-signature,
/// replayed-signature, overspend, easier-chain, orphan-flood, idle-connections,
/// duplicate-flood, huge-locator, nonsense-locator, hold-slots, impostor, fake-registrations
/// (these two need --tracker), or all.
#[derive(Debug, Parser)]
#[command(name = "monkey-attack", version, about, long_about)]
struct Args {
    /// The node to attack, `host:port`.
    #[arg(long, env = "MONKEY_ATTACK_NODE")]
    node: String,
    /// The local address to connect from. Banned addresses are refused for a while, so on one
    /// machine attack from another loopback address than your honest nodes use.
    #[arg(long, env = "MONKEY_ATTACK_FROM", default_value = "127.0.0.2")]
    from: IpAddr,
    /// The network's difficulty floor (blocks meant to pass proof of work are mined at it).
    #[arg(long, env = "MONKEY_ATTACK_FLOOR", default_value_t = protocol::params::DEFAULT_DIFFICULTY_FLOOR)]
    floor: u32,
    /// The tracker's address, for impostor (which ids to claim) and fake-registrations.
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
        node: args.node,
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
            outcome.errors.join(","),
            outcome.closed,
            outcome.still_served,
            outcome.banned,
            outcome.note
        );
    }
    Ok(())
}
