//! The pending pool: admission against chain plus pending, ordering, caps, and reorgs.

use protocol::block::GENESIS_TIMESTAMP;
use protocol::ledger::LedgerError;
use protocol::params::MAX_WAITING_MS;
use protocol::{
    Admitted, Chain, Imported, Keypair, Pool, PoolChanges, PoolError, PoolLimits, genesis,
};

use super::*;

/// A chain where alice (key 1) and bob (key 2) have joined, and an empty pool over it.
fn setup() -> (Chain, Pool, Block) {
    let mut chain = Chain::new(params());
    let b1 = mine_on(
        &genesis(),
        vec![join(&key(1), "alice"), join(&key(2), "bob")],
        FLOOR,
    );
    chain.insert(b1.clone(), NOW).unwrap();
    let pool = Pool::new(PoolLimits::default());
    (chain, pool, b1)
}

/// [`setup`] with a pool of other limits.
fn setup_with(limits: PoolLimits) -> (Chain, Pool) {
    let (chain, _, _) = setup();
    (chain, Pool::new(limits))
}

/// Adds each record to `pool` over `chain`'s ledger, in order; each must get its answer.
fn add_each(pool: &mut Pool, chain: &Chain, cases: Vec<(Record, Result<Admitted, PoolError>)>) {
    for (record, answer) in cases {
        let seq = record.seq;
        assert_eq!(
            pool.add(chain.ledger(), record),
            answer,
            "the record of seq {seq}"
        );
    }
}

/// Inserts a block and moves the pool along, as a node does.
fn apply(chain: &mut Chain, pool: &mut Pool, block: Block) -> Imported {
    let got = chain.insert(block, NOW).unwrap();
    match &got {
        Imported::Extended { connected, .. } => pool.on_tip_change(chain.ledger(), &[], connected),
        Imported::Reorganized {
            disconnected,
            connected,
            ..
        } => pool.on_tip_change(chain.ledger(), disconnected, connected),
        _ => {}
    }
    got
}

#[test]
fn a_double_spend_across_two_pending_purchases_admits_only_the_one_that_fits() {
    let (chain, mut pool, _) = setup();
    let alice = key(1);
    let insufficient = LedgerError::InsufficientFunds {
        balance: 100,
        needed: 800,
    };
    add_each(
        &mut pool,
        &chain,
        vec![
            (buy(&alice, 1, "snub-nosed"), Ok(Admitted::Ready)),
            (
                buy(&alice, 2, "mandrill"),
                Err(PoolError::Ledger(insufficient)),
            ),
            // The same sequence number twice: the second is a conflict, whatever it buys.
            (buy(&alice, 1, "marmoset"), Err(PoolError::Conflict(1))),
            (buy(&alice, 2, "marmoset"), Ok(Admitted::Ready)),
        ],
    );
    assert_eq!(pool.template(100, 1 << 20).len(), 2);
}

#[test]
fn duplicates_replays_and_forgeries_are_refused() {
    let (chain, mut pool, _) = setup();
    let alice = key(1);
    let r = buy(&alice, 1, "capuchin");
    assert_eq!(pool.add(chain.ledger(), r.clone()), Ok(Admitted::Ready));
    assert_eq!(
        pool.add(chain.ledger(), r.clone()),
        Err(PoolError::AlreadyPending)
    );
    // A replay of the join that is already in the chain (seq 1 is pending, so 2 is next).
    assert_eq!(
        pool.add(chain.ledger(), join(&alice, "alice")),
        Err(PoolError::Ledger(LedgerError::BadSequence {
            expected: 2,
            got: 0
        }))
    );
    let mut forged = buy(&alice, 2, "capuchin");
    forged.seq = 3;
    assert!(matches!(
        pool.add(chain.ledger(), forged),
        Err(PoolError::Format(_))
    ));
    assert_eq!(
        pool.add(chain.ledger(), buy(&key(7), 0, "capuchin")),
        Err(PoolError::Ledger(LedgerError::NotJoined))
    );
}

#[test]
fn records_out_of_order_wait_for_the_gap() {
    let (chain, mut pool, _) = setup();
    let alice = key(1);
    let waiting = vec![
        (buy(&alice, 3, "tamarin"), Ok(Admitted::Waiting)),
        (buy(&alice, 2, "tamarin"), Ok(Admitted::Waiting)),
    ];
    add_each(&mut pool, &chain, waiting);
    assert_eq!(pool.ready_len(), 0);
    let gap = buy(&alice, 1, "tamarin");
    add_each(&mut pool, &chain, vec![(gap, Ok(Admitted::Ready))]);
    let seqs: Vec<u64> = pool.template(10, 1 << 20).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(
        pool.add(chain.ledger(), buy(&alice, 100, "tamarin")),
        Err(PoolError::TooFarAhead {
            expected: 4,
            got: 100
        })
    );
}

#[test]
fn the_pool_is_capped() {
    let (chain, mut pool) = setup_with(PoolLimits {
        max_records: 3,
        ..PoolLimits::default()
    });
    let alice = key(1);
    for seq in 1..=3 {
        pool.add(chain.ledger(), buy(&alice, seq, "marmoset"))
            .unwrap();
    }
    assert_eq!(
        pool.add(chain.ledger(), buy(&alice, 4, "marmoset")),
        Err(PoolError::Full)
    );
    assert_eq!(pool.len(), 3);
}

#[test]
fn a_new_tip_drops_what_it_included_and_keeps_the_rest() {
    let (mut chain, mut pool, b1) = setup();
    let (alice, bob) = (key(1), key(2));
    let mine_me = buy(&alice, 1, "capuchin");
    pool.add(chain.ledger(), mine_me.clone()).unwrap();
    pool.add(chain.ledger(), buy(&bob, 1, "baboon")).unwrap();
    apply(
        &mut chain,
        &mut pool,
        mine_on(&b1, vec![mine_me.clone()], FLOOR),
    );
    assert!(!pool.contains(&mine_me.id()));
    assert_eq!(pool.len(), 1);
    // Alice's next purchase is judged against the new balance.
    assert_eq!(
        pool.add(chain.ledger(), buy(&alice, 2, "capuchin")),
        Ok(Admitted::Ready)
    );
}

#[test]
fn a_pending_record_the_new_chain_made_invalid_is_dropped() {
    let (mut chain, mut pool, b1) = setup();
    let alice = key(1);
    pool.add(chain.ledger(), buy(&alice, 1, "snub-nosed"))
        .unwrap();
    // Another node mined a different seq-1 record for alice: ours can never apply now.
    apply(
        &mut chain,
        &mut pool,
        mine_on(&b1, vec![buy(&alice, 1, "marmoset")], FLOOR),
    );
    assert!(pool.is_empty());
}

#[test]
fn a_record_survives_a_reorg_exactly_once() {
    let (mut chain, mut pool, b1) = setup();
    let alice = key(1);
    let purchase = buy(&alice, 1, "howler");
    pool.add(chain.ledger(), purchase.clone()).unwrap();

    // Branch A mines the purchase; the pool lets go of it.
    let a2 = mine_on(&b1, pool.template(100, 1 << 20), 1);
    apply(&mut chain, &mut pool, a2.clone());
    assert!(pool.is_empty());

    // Branch B, heavier, never saw it: the reorg gives the purchase back to the pool.
    let b2 = mine_on_at(&b1, vec![], 3, b1.header.timestamp + 1);
    let got = apply(&mut chain, &mut pool, b2.clone());
    assert!(matches!(got, Imported::Reorganized { .. }), "{got:?}");
    assert!(pool.contains(&purchase.id()));
    assert_eq!(pool.ready_len(), 1);

    // Mined again on B, it is applied once, and the pool is empty again.
    let b3 = mine_on(&b2, pool.template(100, 1 << 20), 1);
    apply(&mut chain, &mut pool, b3);
    assert!(pool.is_empty());
    let cage = &chain.ledger().account(&alice.account()).unwrap().cage;
    assert_eq!(cage.get("howler"), Some(&1));
    assert_eq!(chain.ledger().balance(&alice.account()), 700);

    // And if A comes back heavier, the record is in A's block: not re-added, still applied once.
    let a3 = mine_on_at(&a2, vec![], 4, GENESIS_TIMESTAMP + 10_000_000);
    let got = apply(&mut chain, &mut pool, a3);
    assert!(matches!(got, Imported::Reorganized { .. }), "{got:?}");
    assert!(pool.is_empty());
    let cage = &chain.ledger().account(&alice.account()).unwrap().cage;
    assert_eq!(cage.get("howler"), Some(&1));
}

/// Records 1, 2, ... of a fresh key that never joined: valid signatures, never minable.
fn unminable(n: u8, seqs: std::ops::RangeInclusive<u64>) -> Vec<protocol::Record> {
    let k = Keypair::from_seed([n; 32]);
    seqs.map(|s| buy(&k, s, "marmoset")).collect()
}

#[test]
fn unminable_records_wait_apart_and_never_take_the_room_of_minable_ones() {
    let (chain, mut pool) = setup_with(PoolLimits {
        max_records: 3,
        max_waiting: 4,
        max_waiting_per_account: 2,
        ..PoolLimits::default()
    });
    // A flood of fresh keys, each signing 1, 2, 3 and never joining.
    for n in 100..120 {
        let mut seqs = unminable(n, 1..=3).into_iter();
        for r in seqs.by_ref().take(2) {
            assert_eq!(pool.add(chain.ledger(), r), Ok(Admitted::Waiting));
        }
        assert_eq!(
            pool.add(chain.ledger(), seqs.next().unwrap()),
            Err(PoolError::TooManyWaiting)
        );
    }
    assert_eq!(pool.waiting_len(), 4, "capped");
    assert_eq!(pool.ready_len(), 0);
    // Minable records still have the whole room; nothing waiting is reported for the store.
    let alice = key(1);
    for seq in 1..=3 {
        assert_eq!(
            pool.add(chain.ledger(), buy(&alice, seq, "marmoset")),
            Ok(Admitted::Ready)
        );
    }
    assert_eq!(pool.template(10, 1 << 20).len(), 3);
    assert_eq!(pool.take_changes(), PoolChanges::default());
}

#[test]
fn waiting_records_of_joined_accounts_outlast_those_of_strangers() {
    let (chain, mut pool) = setup_with(PoolLimits {
        max_waiting: 2,
        ..PoolLimits::default()
    });
    let alice = key(1);
    let alice_3 = buy(&alice, 3, "marmoset");
    assert_eq!(
        pool.add(chain.ledger(), alice_3.clone()),
        Ok(Admitted::Waiting)
    );
    let strangers: Vec<_> = (0..3)
        .map(|i| unminable(150 + i, 1..=1).remove(0))
        .collect();
    for r in &strangers {
        assert_eq!(pool.add(chain.ledger(), r.clone()), Ok(Admitted::Waiting));
    }
    // Each stranger pushed out the stranger before it; alice's record stayed.
    assert!(pool.contains(&alice_3.id()));
    assert!(pool.contains(&strangers[2].id()));
    assert!(!pool.contains(&strangers[0].id()) && !pool.contains(&strangers[1].id()));
    // A joined account's record pushes out a stranger's too.
    let bob_2 = buy(&key(2), 2, "marmoset");
    assert_eq!(
        pool.add(chain.ledger(), bob_2.clone()),
        Ok(Admitted::Waiting)
    );
    assert!(!pool.contains(&strangers[2].id()));
    // And with only joined accounts' records waiting, a stranger's is the one refused.
    assert_eq!(
        pool.add(chain.ledger(), unminable(160, 1..=1).remove(0)),
        Err(PoolError::Full)
    );
    assert!(pool.contains(&alice_3.id()) && pool.contains(&bob_2.id()));
}

#[test]
fn waiting_records_expire() {
    let (chain, _, _) = setup();
    let mut pool = Pool::new(PoolLimits::default());
    pool.expire(1_000);
    let waiting = unminable(170, 1..=2);
    for r in &waiting {
        assert_eq!(pool.add(chain.ledger(), r.clone()), Ok(Admitted::Waiting));
    }
    pool.expire(1_000 + MAX_WAITING_MS);
    assert_eq!(pool.waiting_len(), 2, "not yet");
    pool.expire(1_001 + MAX_WAITING_MS);
    assert_eq!(pool.waiting_len(), 0);
    assert!(pool.is_empty());
}

#[test]
fn a_record_that_stops_waiting_is_reported_for_relay_and_store() {
    let (chain, mut pool, _) = setup();
    let alice = key(1);
    let second = buy(&alice, 2, "marmoset");
    assert_eq!(
        pool.add(chain.ledger(), second.clone()),
        Ok(Admitted::Waiting)
    );
    assert!(!pool.is_ready(&second.id()));
    assert_eq!(
        pool.add(chain.ledger(), buy(&alice, 1, "marmoset")),
        Ok(Admitted::Ready)
    );
    assert!(pool.is_ready(&second.id()));
    let changes = pool.take_changes();
    assert_eq!(changes.ready, vec![second]);
    assert!(changes.dropped.is_empty());
}

#[test]
fn a_minable_record_is_admitted_at_a_full_pool_by_evicting_the_biggest_account() {
    let (chain, mut pool) = setup_with(PoolLimits {
        max_records: 4,
        ..PoolLimits::default()
    });
    let (alice, bob) = (key(1), key(2));
    let bobs: Vec<_> = (1..=3).map(|s| buy(&bob, s, "marmoset")).collect();
    for r in &bobs {
        assert_eq!(pool.add(chain.ledger(), r.clone()), Ok(Admitted::Ready));
    }
    let alices = buy(&alice, 1, "marmoset");
    assert_eq!(
        pool.add(chain.ledger(), alices.clone()),
        Ok(Admitted::Ready)
    );
    // Full. A newcomer's join is still admitted: bob, holding the most, makes room.
    let carol = join(&key(3), "carol");
    assert_eq!(pool.add(chain.ledger(), carol.clone()), Ok(Admitted::Ready));
    assert!(pool.is_ready(&carol.id()) && pool.is_ready(&alices.id()));
    assert!(bobs.iter().all(|r| !pool.contains(&r.id())));
    let mut dropped = pool.take_changes().dropped;
    dropped.sort();
    let mut expected: Vec<_> = bobs.iter().map(|r| r.id()).collect();
    expected.sort();
    assert_eq!(dropped, expected);
}

#[test]
fn a_reorg_that_makes_a_ready_record_wait_reports_it_dropped() {
    let (mut chain, mut pool, b1) = setup();
    let alice = key(1);
    let first = buy(&alice, 1, "marmoset");
    let second = buy(&alice, 2, "marmoset");
    pool.add(chain.ledger(), first.clone()).unwrap();
    pool.add(chain.ledger(), second.clone()).unwrap();
    // A block mines the first; then a heavier branch forks below the block that made her join,
    // and another account takes her name there: her join can never apply again.
    let a2 = mine_on(&b1, vec![first.clone()], 1);
    apply(&mut chain, &mut pool, a2);
    assert!(pool.is_ready(&second.id()));
    pool.take_changes();
    let usurper = join(&key(9), "alice");
    let other = mine_on_at(&genesis(), vec![usurper], 6, GENESIS_TIMESTAMP + 1);
    let got = apply(&mut chain, &mut pool, other);
    assert!(matches!(got, Imported::Reorganized { .. }), "{got:?}");
    // Alice has not joined on the new chain: both her records wait, and neither is stored.
    assert!(!pool.is_ready(&second.id()) && !pool.is_ready(&first.id()));
    assert_eq!(pool.take_changes().dropped, vec![second.id()]);
}

#[test]
fn a_flood_of_one_record_accounts_pushes_out_its_own_oldest_not_the_newcomer() {
    let (chain, mut pool) = setup_with(PoolLimits {
        max_records: 20,
        ..PoolLimits::default()
    });
    let flood: Vec<_> = (0..30u8)
        .map(|i| join(&Keypair::from_seed([100 + i; 32]), &format!("flood{i}")))
        .collect();
    for r in &flood[..20] {
        assert_eq!(pool.add(chain.ledger(), r.clone()), Ok(Admitted::Ready));
    }
    let honest = join(&key(3), "carol");
    assert_eq!(
        pool.add(chain.ledger(), honest.clone()),
        Ok(Admitted::Ready)
    );
    // Ten more: they push out the ten oldest, not the newcomer (it would go only after the
    // whole pool had turned over, by when the next blocks have mined it).
    for r in &flood[20..30] {
        assert_eq!(pool.add(chain.ledger(), r.clone()), Ok(Admitted::Ready));
    }
    assert!(pool.is_ready(&honest.id()), "the newcomer stays");
    assert_eq!(pool.ready_len(), 20);
    assert!(
        flood[..11].iter().all(|r| !pool.contains(&r.id())),
        "the oldest went first"
    );
    assert!(flood[11..30].iter().all(|r| pool.is_ready(&r.id())));
}
