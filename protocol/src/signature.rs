//! The one rule for ed25519 signatures, checked one at a time or many at once, with the same
//! verdict either way.
//!
//! A signature `(R, s)` by key `A` over message `M` is valid when `A` and `R` are curve points
//! in their canonical encodings and neither of small order, `s` is a canonical scalar, and
//! `[8](s·B - k·A - R)` is the identity, with `k = SHA-512(R || A || M)` (the cofactored
//! equation of RFC 8032 §5.1.7). Every signature ed25519-dalek makes passes.
//!
//! Why our own check instead of ed25519-dalek's `verify`: a sync checks thousands of signatures
//! and a batch check ([`verify_batch`]) does that in about half the time, but it must accept
//! exactly what the single check accepts, or a crafted signature splits the network: nodes that
//! took a block relayed on its own (single check) would refuse it and nodes that took it in a
//! sync (batch check) would keep it. ed25519-dalek's single check is cofactorless, and a batch
//! check cannot match a cofactorless rule (a signature whose `R` hides a small-order part
//! passes a random batch one time in eight). With the cofactor in both equations, as Zcash did
//! for the same reason (ZIP 215), a batch passes exactly when every signature in it passes,
//! except with probability about 2^-128.
//!
//! The batch's random weights are derived from everything in it (no source of randomness is
//! needed, and a run is reproducible): someone choosing the signatures cannot choose the weights
//! without finding SHA-512 outputs.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::account::{AccountId, Signature};

/// One signature to check: the key, the message and the signature.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The signer's key.
    pub account: &'a AccountId,
    /// The signed bytes.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

impl AccountId {
    /// Checks `signature` over `message` against this key, by this module's rule (the one a
    /// batch check applies too).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        verify(&Item {
            account: self,
            message,
            signature,
        })
    }
}

/// A signature decoded for the equation: `R`'s encoding, `A`, `s` and `k`.
struct Parts {
    r: [u8; 32],
    a: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Decodes `item` but for `R`, or `None` when `A` or `s` is not canonical or `A` is of small
/// order: the checks that do not need the equation, the same for one signature and a batch.
fn parts(item: &Item<'_>) -> Option<Parts> {
    let (r, s) = item.signature.0.split_at(32);
    let r: [u8; 32] = r.try_into().ok()?;
    let s: [u8; 32] = s.try_into().ok()?;
    let s = Option::from(Scalar::from_canonical_bytes(s))?;
    let a = point(&item.account.0)?;
    let mut hash = Sha512::new();
    hash.update(r);
    hash.update(item.account.0);
    hash.update(item.message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    Some(Parts { r, a, s, k })
}

/// The point `bytes` encodes, if the encoding is canonical (the one its compression gives)
/// and the point is not of small order.
fn point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    if point.is_small_order() || !canonical(bytes) {
        return None;
    }
    Some(point)
}

/// Whether `bytes` is the canonical encoding of a point's y coordinate: below the field's prime
/// 2^255 - 19 once the sign bit is cleared. (The other non-canonical form, a set sign bit for
/// x = 0, only encodes points of small order, which [`point`] refuses.)
fn canonical(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    // y < 2^255 - 19 unless every byte from the second up is 0xff (0x7f for the top one) and
    // the lowest is at least 0xed.
    !(y[0] >= 0xed && y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f)
}

/// Checks one signature (see the module's rule).
pub fn verify(item: &Item<'_>) -> bool {
    let Some(p) = parts(item) else {
        return false;
    };
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-p.a, &p.s);
    // An honest signature's R is exactly s·B - k·A: one compression, what a cofactorless check
    // costs (and its encoding is then canonical).
    if expected.compress().0 == p.r {
        return !expected.is_small_order();
    }
    // Otherwise R may differ from it by a point of small order only.
    point(&p.r).is_some_and(|r| (expected - r).mul_by_cofactor().is_identity())
}

/// Checks many signatures at once: `true` when every one passes [`verify`] (except with
/// probability about 2^-128), `false` when one fails ([`first_failure`] finds which). About
/// twice as fast as checking them one at a time, for a few dozen or more.
pub fn verify_batch(items: &[Item<'_>]) -> bool {
    let Some(all) = items.iter().map(parts).collect::<Option<Vec<Parts>>>() else {
        return false;
    };
    let weights = weights(items, &all);
    // sum z_i (R_i + k_i A_i - s_i B) = 0, times the cofactor.
    let mut b = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(1 + 2 * all.len());
    let mut points = Vec::with_capacity(1 + 2 * all.len());
    for (p, z) in all.iter().zip(&weights) {
        let Some(r) = point(&p.r) else {
            return false;
        };
        b -= z * p.s;
        scalars.push(*z);
        points.push(r);
        scalars.push(z * p.k);
        points.push(p.a);
    }
    scalars.push(b);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// At most this many signatures are checked one at a time by [`first_failure`]: a batch of one
/// or two costs about as much as checking them alone (`cargo bench -p protocol --bench
/// signatures`), and a relayed block often holds no more.
const ONE_AT_A_TIME: usize = 2;

/// The place of the first signature in `items` that fails, `None` when all pass. A few are
/// checked one at a time; more in one batch ([`verify_batch`]), and should it fail, its halves
/// the same way, the first half first: a bad signature among many costs about two batch checks
/// more, not one single check per signature.
pub fn first_failure(items: &[Item<'_>]) -> Option<usize> {
    if items.len() <= ONE_AT_A_TIME {
        return items.iter().position(|item| !verify(item));
    }
    if verify_batch(items) {
        return None;
    }
    let (left, right) = items.split_at(items.len() / 2);
    first_failure(left).or_else(|| first_failure(right).map(|at| left.len() + at))
}

/// A 128-bit nonzero weight for each signature, from SHA-512 of the whole batch (every key,
/// signature and `k`) and the signature's place in it.
fn weights(items: &[Item<'_>], all: &[Parts]) -> Vec<Scalar> {
    let mut seed = Sha512::new();
    seed.update(b"monkeychain batch weights");
    for (item, p) in items.iter().zip(all) {
        seed.update(item.account.0);
        seed.update(item.signature.0);
        seed.update(p.k.as_bytes());
    }
    let seed = seed.finalize();
    (0..all.len() as u64)
        .map(|i| {
            let mut h = Sha512::new();
            h.update(seed);
            h.update(i.to_le_bytes());
            let out = h.finalize();
            let mut low = [0u8; 16];
            low.copy_from_slice(&out[..16]);
            Scalar::from(u128::from_le_bytes(low).max(1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::account::Keypair;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn item<'a>(account: &'a AccountId, message: &'a [u8], signature: &'a Signature) -> Item<'a> {
        Item {
            account,
            message,
            signature,
        }
    }

    /// A signature by `secret` whose `R` carries the small-order point `torsion`: valid under
    /// the cofactored equation, refused by a cofactorless one.
    fn with_torsion(
        secret: Scalar,
        message: &[u8],
        torsion: EdwardsPoint,
    ) -> (AccountId, Signature) {
        let a = EdwardsPoint::mul_base(&secret).compress().to_bytes();
        let nonce = Scalar::from(12345u64);
        let r = (EdwardsPoint::mul_base(&nonce) + torsion)
            .compress()
            .to_bytes();
        let mut h = Sha512::new();
        h.update(r);
        h.update(a);
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = nonce + k * secret;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(s.as_bytes());
        (AccountId(a), Signature(sig))
    }

    #[test]
    fn dalek_signatures_pass_one_at_a_time_and_in_a_batch() {
        let keys: Vec<Keypair> = (0..40u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let accounts: Vec<AccountId> = keys.iter().map(Keypair::account).collect();
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; i as usize]).collect();
        let sigs: Vec<Signature> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let items: Vec<Item> = (0..40)
            .map(|i| item(&accounts[i], &messages[i], &sigs[i]))
            .collect();
        assert!(items.iter().all(verify));
        assert!(verify_batch(&items));
        assert!(verify_batch(&[]), "nothing to check passes");

        assert_eq!(first_failure(&items), None);

        // One wrong message among forty fails the batch, wherever it is, and is found.
        for bad in [0, 17, 39] {
            let mut items = items.clone();
            items[bad].message = b"something else";
            assert!(!verify(&items[bad]));
            assert!(
                !verify_batch(&items),
                "bad signature at {bad} passed the batch"
            );
            assert_eq!(first_failure(&items), Some(bad));
        }
        // With several, the first.
        let mut several = items.clone();
        for bad in [33, 9, 21] {
            several[bad].message = b"something else";
        }
        assert_eq!(first_failure(&several), Some(9));
    }

    #[test]
    fn a_small_order_part_in_r_gets_the_same_verdict_from_both_checks() {
        // The attack a cofactorless single check and a batch check disagree on.
        for torsion in EIGHT_TORSION.iter().skip(1) {
            let (account, sig) = with_torsion(Scalar::from(99u64), b"buy", *torsion);
            let one = item(&account, b"buy", &sig);
            let alone = verify(&one);
            assert!(
                alone,
                "the cofactored equation accepts a small-order part in R"
            );
            let good_key = Keypair::from_seed([3; 32]);
            let good_sig = good_key.sign(b"x");
            let good_account = good_key.account();
            let batch = [item(&good_account, b"x", &good_sig), one];
            assert_eq!(verify_batch(&batch), alone);
        }
        // A clean signature made the same way passes too.
        let (account, sig) = with_torsion(Scalar::from(99u64), b"buy", EdwardsPoint::default());
        assert!(verify(&item(&account, b"buy", &sig)));
    }

    #[test]
    fn small_order_keys_and_r_and_odd_encodings_are_refused_by_both() {
        let key = Keypair::from_seed([5; 32]);
        let account = key.account();
        let sig = key.sign(b"m");
        // A small-order key: anyone could sign for it.
        let identity = AccountId(EdwardsPoint::default().compress().to_bytes());
        let weak_sig = {
            // R = s·B with k·A = 0 satisfies the equation for A = identity.
            let s = Scalar::from(7u64);
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(EdwardsPoint::mul_base(&s).compress().as_bytes());
            bytes[32..].copy_from_slice(s.as_bytes());
            Signature(bytes)
        };
        // A small-order R with s = k·a: refused for R's order alone.
        let mut small_r = sig;
        small_r.0[..32].copy_from_slice(EIGHT_TORSION[1].compress().as_bytes());
        // s not reduced: s + l encodes the same scalar non-canonically.
        let mut big_s = sig;
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (byte, add) in big_s.0[32..].iter_mut().zip(l) {
            let sum = *byte as u16 + add as u16 + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        // A non-canonical key encoding: y + p for a small y of a point of large order (only
        // y < 19 has a second encoding).
        let y = (2u8..19)
            .find(|&y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                CompressedEdwardsY(bytes)
                    .decompress()
                    .is_some_and(|p| !p.is_small_order())
            })
            .expect("a small y on the curve");
        let mut odd_key = [0xffu8; 32];
        odd_key[0] = 0xed + y;
        odd_key[31] = 0x7f;
        let odd = AccountId(odd_key);

        let good = item(&account, b"m", &sig);
        let bad = [
            item(&identity, b"m", &weak_sig),
            item(&account, b"m", &small_r),
            item(&account, b"m", &big_s),
            item(&odd, b"m", &sig),
            item(&AccountId([0xff; 32]), b"m", &sig),
        ];
        assert!(verify(&good));
        for (i, bad) in bad.iter().enumerate() {
            assert!(!verify(bad), "case {i} passed alone");
            assert!(!verify_batch(&[good, *bad]), "case {i} passed in a batch");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever bytes are flipped in a batch of good signatures, the batch's verdict is
        /// whether every signature passes on its own.
        #[test]
        fn the_batch_verdict_is_every_single_verdict(
            flips in proptest::collection::vec((0usize..6, 0usize..128, any::<u8>()), 0..3),
        ) {
            let keys: Vec<Keypair> = (0..6u8).map(|i| Keypair::from_seed([i + 1; 32])).collect();
            let mut accounts: Vec<AccountId> = keys.iter().map(Keypair::account).collect();
            let messages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 20]).collect();
            let mut sigs: Vec<Signature> =
                keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
            for (which, at, xor) in flips {
                if at < 64 {
                    sigs[which].0[at] ^= xor;
                } else {
                    accounts[which].0[(at - 64) % 32] ^= xor;
                }
            }
            let items: Vec<Item> = (0..6)
                .map(|i| item(&accounts[i], &messages[i], &sigs[i]))
                .collect();
            prop_assert_eq!(verify_batch(&items), items.iter().all(verify));
            prop_assert_eq!(first_failure(&items), items.iter().position(|i| !verify(i)));
        }
    }
}
