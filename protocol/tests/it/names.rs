//! The name rule as consensus: a chain refuses a block whose join takes a name that looks like
//! one already taken (other case, fullwidth letters) or that hides invisible or
//! direction-changing characters; the ledger finds a shopper by any form of their name.

use protocol::ledger::Undo;
use protocol::name::NameError;
use protocol::{BlockError, Chain, Keypair, Ledger, LedgerError};

use crate::{FLOOR, NOW, join, key, mine_on, params};

/// What the chain answers to a block on `alice`'s join holding the join of `name`.
fn second_join(name: &str) -> Result<(), BlockError> {
    let mut chain = Chain::new(params());
    let first = mine_on(&protocol::genesis(), vec![join(&key(1), "alice")], FLOOR);
    chain.insert(first.clone(), NOW).expect("alice joins");
    let second = mine_on(&first, vec![join(&key(2), name)], FLOOR);
    chain.insert(second, NOW).map(|_| ())
}

fn refusal(name: &str) -> LedgerError {
    match second_join(name) {
        Err(BlockError::Ledger { error, .. }) => error,
        other => panic!("{name:?}: expected a ledger refusal, got {other:?}"),
    }
}

#[test]
fn look_alike_names_are_one_name() {
    for same in [
        "alice",
        "ALICE",
        "Alice",
        "ａｌｉｃｅ",
        "ＡＬＩＣＥ",
        " alice ",
    ] {
        assert!(
            matches!(refusal(same), LedgerError::NameTaken(_)),
            "{same:?} should be taken"
        );
    }
    assert_eq!(second_join("alicia"), Ok(()));
}

#[test]
fn invisible_and_direction_changing_names_are_refused() {
    for hidden in [
        "alice\u{200B}",
        "\u{202E}ecila",
        "al\u{200D}ice",
        "bob\u{FE0F}",
    ] {
        assert!(
            matches!(
                refusal(hidden),
                LedgerError::BadName(NameError::Invisible(_))
            ),
            "{hidden:?} should be refused"
        );
    }
}

#[test]
fn a_shopper_is_found_by_any_form_of_their_name() {
    let mut ledger = Ledger::new();
    let k: Keypair = key(3);
    ledger
        .apply_record(&join(&k, "Zoë"), &mut Undo::default())
        .expect("Zoë joins");
    for form in ["zoë", "ZOË", "Zoe\u{308}", "ｚｏë"] {
        assert_eq!(ledger.account_by_name(form), Some(k.account()), "{form:?}");
    }
}
