//! Proof of work: the SHA-256 midstate and the multi-threaded, cancellable miner.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::block_api::compress256;

use crate::hash::Hash256;
use crate::header::{HEADER_PREFIX_SIZE, HEADER_SIZE, Header};

/// SHA-256's initial state.
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Nonces a miner thread tries between looks at its stop flags. At 15 million hashes per second
/// this is about 70 microseconds, so a cancel is seen well within a millisecond.
const CHECK_EVERY: u64 = 1024;

/// A header's hash state after its fixed 128-byte prefix, plus its last block ready for a nonce.
#[derive(Clone, Debug)]
pub struct Midstate {
    state: [u32; 8],
    tail: [u8; 64],
}

impl Midstate {
    /// Compresses the header's prefix once and pads its tail.
    pub fn new(header: &Header) -> Midstate {
        let bytes = header.encode();
        let mut state = SHA256_IV;
        let mut prefix = [[0u8; 64]; 2];
        prefix[0].copy_from_slice(&bytes[0..64]);
        prefix[1].copy_from_slice(&bytes[64..HEADER_PREFIX_SIZE]);
        compress256(&mut state, &prefix);
        let mut tail = [0u8; 64];
        let rest = HEADER_SIZE - HEADER_PREFIX_SIZE;
        tail[..rest].copy_from_slice(&bytes[HEADER_PREFIX_SIZE..]);
        tail[rest] = 0x80;
        tail[56..].copy_from_slice(&((HEADER_SIZE as u64) * 8).to_be_bytes());
        Midstate { state, tail }
    }

    /// The final state words for `nonce`; the hash is these, big-endian.
    #[inline]
    pub fn state_for(&self, nonce: u64) -> [u32; 8] {
        let mut block = self.tail;
        block[..8].copy_from_slice(&nonce.to_le_bytes());
        let mut state = self.state;
        compress256(&mut state, std::slice::from_ref(&block));
        state
    }

    /// The block hash for `nonce`.
    pub fn hash_for(&self, nonce: u64) -> Hash256 {
        state_to_hash(&self.state_for(nonce))
    }
}

/// Turns final SHA-256 state words into the digest bytes.
pub fn state_to_hash(state: &[u32; 8]) -> Hash256 {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash256(out)
}

/// Whether final state words have at least `bits` leading zero bits, without building the digest.
#[inline]
pub fn state_meets(state: &[u32; 8], bits: u32) -> bool {
    let mut remaining = bits;
    for word in state {
        if remaining == 0 {
            return true;
        }
        let zeros = word.leading_zeros();
        if remaining <= 32 {
            return zeros >= remaining;
        }
        if zeros < 32 {
            return false;
        }
        remaining -= 32;
    }
    remaining == 0
}

/// What a mining attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MineOutcome {
    /// The solved header, if one was found.
    pub header: Option<Header>,
    /// Hashes tried over all threads.
    pub hashes: u64,
}

/// Searches nonces for `template` (its `bits` is the target) on `threads` threads.
///
/// Stops when a nonce is found, when `cancel` is set, or after `max_hashes` in total when given.
/// Thread `i` tries `template.nonce + i`, then steps by `threads`, so no two threads repeat work.
pub fn mine(
    template: &Header,
    threads: usize,
    cancel: &AtomicBool,
    max_hashes: Option<u64>,
) -> MineOutcome {
    let threads = threads.max(1) as u64;
    let midstate = Midstate::new(template);
    let found = AtomicBool::new(false);
    let winner = AtomicU64::new(0);
    let total = AtomicU64::new(0);
    let per_thread = max_hashes.map(|m| m.div_ceil(threads));
    std::thread::scope(|s| {
        for i in 0..threads {
            let (midstate, found, winner, total) = (&midstate, &found, &winner, &total);
            s.spawn(move || {
                let tried = search(
                    midstate,
                    template.bits,
                    template.nonce.wrapping_add(i),
                    threads,
                    per_thread,
                    cancel,
                    found,
                    winner,
                );
                total.fetch_add(tried, Ordering::Relaxed);
            });
        }
    });
    let header = found.load(Ordering::Acquire).then(|| Header {
        nonce: winner.load(Ordering::Acquire),
        ..template.clone()
    });
    MineOutcome {
        header,
        hashes: total.load(Ordering::Relaxed),
    }
}

/// One thread's search loop. Returns the hashes it tried.
#[allow(clippy::too_many_arguments)]
fn search(
    midstate: &Midstate,
    bits: u32,
    start: u64,
    step: u64,
    budget: Option<u64>,
    cancel: &AtomicBool,
    found: &AtomicBool,
    winner: &AtomicU64,
) -> u64 {
    let budget = budget.unwrap_or(u64::MAX);
    let mut nonce = start;
    let mut tried = 0u64;
    while tried < budget {
        if cancel.load(Ordering::Relaxed) || found.load(Ordering::Relaxed) {
            break;
        }
        let batch = CHECK_EVERY.min(budget - tried);
        for _ in 0..batch {
            let state = midstate.state_for(nonce);
            tried += 1;
            if state_meets(&state, bits) {
                // First finder wins; a second one in the same instant is simply ignored.
                if found
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    winner.store(nonce, Ordering::Release);
                }
                return tried;
            }
            nonce = nonce.wrapping_add(step);
        }
    }
    tried
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::genesis;

    #[test]
    fn midstate_hash_equals_plain_sha256() {
        let header = genesis().header;
        let mid = Midstate::new(&header);
        for nonce in [0, 1, 12345, u64::MAX] {
            let h = Header {
                nonce,
                ..header.clone()
            };
            assert_eq!(mid.hash_for(nonce), h.hash());
        }
    }

    #[test]
    fn state_meets_agrees_with_the_digest() {
        let mid = Midstate::new(&genesis().header);
        for nonce in 0..2000 {
            let state = mid.state_for(nonce);
            let zeros = state_to_hash(&state).leading_zero_bits();
            for bits in [0, 1, 4, 8, 31, 32, 33, 64, 256] {
                assert_eq!(
                    state_meets(&state, bits),
                    zeros >= bits,
                    "nonce {nonce} bits {bits}"
                );
            }
        }
    }

    #[test]
    fn miner_finds_a_valid_nonce_on_several_threads() {
        let template = Header {
            bits: 12,
            ..genesis().header
        };
        let out = mine(&template, 3, &AtomicBool::new(false), None);
        let solved = out.header.expect("12 bits is found quickly");
        assert!(solved.hash().leading_zero_bits() >= 12);
        assert!(out.hashes >= 1);
    }

    #[test]
    fn miner_respects_its_budget_and_cancel_flag() {
        let template = Header {
            bits: 200,
            ..genesis().header
        };
        let out = mine(&template, 2, &AtomicBool::new(false), Some(10_000));
        assert_eq!(out.header, None);
        assert_eq!(out.hashes, 10_000);
        let cancelled = mine(&template, 2, &AtomicBool::new(true), None);
        assert_eq!(
            cancelled,
            MineOutcome {
                header: None,
                hashes: 0
            }
        );
    }

    #[test]
    fn cancel_from_another_thread_stops_the_miner() {
        let template = Header {
            bits: 200,
            ..genesis().header
        };
        let cancel = AtomicBool::new(false);
        std::thread::scope(|s| {
            let miner = s.spawn(|| mine(&template, 2, &cancel, None));
            // Let it run a little, then stop it; an endless search here would hang the test.
            while !miner.is_finished() {
                std::thread::yield_now();
                cancel.store(true, Ordering::Relaxed);
            }
            assert_eq!(miner.join().unwrap().header, None);
        });
    }
}
