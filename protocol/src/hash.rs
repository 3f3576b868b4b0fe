//! A 32-byte SHA-256 digest: block hashes, record ids and commitments, printed as lowercase hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 digest. Blocks, records and commitments are all named by one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash256(pub [u8; 32]);

/// The hash of a block header.
pub type BlockHash = Hash256;

impl Hash256 {
    /// The all-zero hash: the genesis block's `prev_hash`.
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Hash256 {
        Hash256(Sha256::digest(bytes).into())
    }

    /// The number of leading zero bits, most significant bit of the first byte first.
    pub fn leading_zero_bits(&self) -> u32 {
        leading_zero_bits(&self.0)
    }

    /// The first 8 hex digits, for logs and the shop.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Leading zero bits of a big-endian byte string.
pub fn leading_zero_bits(bytes: &[u8]) -> u32 {
    let mut zeros = 0;
    for &b in bytes {
        if b == 0 {
            zeros += 8;
        } else {
            return zeros + b.leading_zeros();
        }
    }
    zeros
}

/// `Display` as the whole hex, `Debug` as the type's `short()` form: for the 32-byte ids that
/// logs and test failures print (hashes, accounts).
macro_rules! hex_fmt {
    ($ty:ident) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::hash::with_hex(&self.0, |hex| f.write_str(hex))
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.short())
            }
        }
    };
}

pub(crate) use hex_fmt;

hex_fmt!(Hash256);

/// The text was not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex digits")]
pub struct ParseHashError;

impl FromStr for Hash256 {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Hash256).ok_or(ParseHashError)
    }
}

/// A map keyed by digests, with [`DigestHasher`].
pub type DigestMap<V> = std::collections::HashMap<Hash256, V, DigestState>;

/// A set of digests, with [`DigestHasher`].
pub type DigestSet = std::collections::HashSet<Hash256, DigestState>;

/// Builds [`DigestHasher`]s with this process's random keys. Made for digests, through
/// [`DigestMap`] and [`DigestSet`]: it is fast on short keys of a fixed size, and a key that a
/// peer can choose freely (an account id, a name) keeps SipHash.
#[derive(Debug, Clone, Copy)]
pub struct DigestState {
    keys: [u64; 3],
}

impl Default for DigestState {
    fn default() -> DigestState {
        static KEYS: std::sync::OnceLock<[u64; 3]> = std::sync::OnceLock::new();
        let keys = *KEYS.get_or_init(|| {
            use std::hash::BuildHasher;
            // The standard library's random keys, drawn from the OS once per process.
            let random = std::collections::hash_map::RandomState::new();
            [0u8, 1, 2].map(|i| random.hash_one(i))
        });
        DigestState { keys }
    }
}

impl std::hash::BuildHasher for DigestState {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher {
            state: self.keys[0],
            key: self.keys[1] | 1,
            last: self.keys[2],
        }
    }
}

/// A hasher for maps keyed by digests (block hashes, record ids): a folded multiply per 8
/// bytes and one more at the end (as foldhash's quality variant does), keyed with random
/// numbers drawn once per process, in place of the standard library's SipHash. In a profile
/// of a 100,000-block sync, SipHash itself (`DefaultHasher::write`, `hash_one`) was about a
/// fifth of the chain thread's samples: every block is looked up, inserted and removed by hash
/// a dozen times. The keys are secret, so a peer choosing records or grinding block hashes
/// cannot aim many at one bucket; SipHash stays on maps keyed by anything else (an account id
/// is a key anyone makes freely, and names are text).
#[derive(Debug, Clone)]
pub struct DigestHasher {
    state: u64,
    key: u64,
    last: u64,
}

/// The high and low halves of a 128-bit product, folded together.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl std::hash::Hasher for DigestHasher {
    /// The length goes in first: the last chunk is padded with zeros, and without it two
    /// writes differing only in trailing zeros would collide whatever the keys.
    fn write(&mut self, bytes: &[u8]) {
        self.state = self.state.wrapping_add(bytes.len() as u64);
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.state = folded_multiply(self.state ^ u64::from_le_bytes(word), self.key);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.state = folded_multiply(self.state ^ n as u64, self.key);
    }

    /// The last multiply mixes the last word's bits into the low ones a table indexes by
    /// (without it, keys differing only in their last bytes bunch in a few buckets).
    fn finish(&self) -> u64 {
        folded_multiply(self.state ^ self.last, self.key.rotate_left(32) | 1)
    }
}

/// Each byte's value as a hex digit (either case), or `NOT_HEX`.
const HEX_VALUES: [u8; 256] = {
    let mut values = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        values[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        values[b'a' as usize + i] = 10 + i as u8;
        values[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    values
};

/// Not a hex digit: any value with a bit above the low four.
const NOT_HEX: u8 = 0xff;

/// Parses exactly `N` bytes of hex, either case. A table look-up per digit and one check at the
/// end: every block's hashes, keys and signatures are parsed from every `C` and `B` line, on
/// the connection's task between a sync's batches, and `hex::decode_to_slice` (a branch per
/// digit) was 3% of a syncing node's CPU samples in a profile.
pub(crate) fn parse_hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut seen = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        seen |= high | low;
        *byte = (high << 4) | low;
    }
    (seen < 16).then_some(out)
}

/// Calls `f` with `bytes` (at most 64) as lowercase hex, built on the stack: hashes, keys and
/// signatures are written into every relayed line, so this is on the hot path.
pub(crate) fn with_hex<R>(bytes: &[u8], f: impl FnOnce(&str) -> R) -> R {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 128];
    let len = bytes.len().min(64) * 2;
    for (i, b) in bytes.iter().take(64).enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    // Only ASCII digits were written.
    f(std::str::from_utf8(&buf[..len]).unwrap_or_default())
}

/// Reads `N` bytes of hex from a JSON string without allocating a `String` for it.
pub(crate) struct HexVisitor<const N: usize>;

impl<const N: usize> serde::de::Visitor<'_> for HexVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} hex digits", 2 * N)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<[u8; N], E> {
        parse_hex_array(s).ok_or_else(|| E::custom(format_args!("expected {} hex digits", 2 * N)))
    }
}

impl Serialize for Hash256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_hex(&self.0, |hex| s.serialize_str(hex))
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor::<32>).map(Hash256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0x01]), 7);
        assert_eq!(leading_zero_bits(&[0x00, 0x0f]), 12);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_text() {
        let h = Hash256::digest(b"monkey");
        let text = h.to_string();
        assert_eq!(text.parse::<Hash256>(), Ok(h));
        assert!("zz".parse::<Hash256>().is_err());
        assert!(text[..62].parse::<Hash256>().is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Hash256>(&json).unwrap(), h);
    }

    #[test]
    fn hex_is_read_as_the_hex_crate_reads_it_for_every_pair_of_characters() {
        // Every pair of bytes as a one-byte value: the same verdict and value as the crate's.
        for high in 0..=255u8 {
            for low in 0..=255u8 {
                let text = [high, low];
                let Ok(text) = std::str::from_utf8(&text) else {
                    continue;
                };
                let mut expected = [0u8; 1];
                let expected = hex::decode_to_slice(text, &mut expected)
                    .ok()
                    .map(|()| expected);
                assert_eq!(parse_hex_array::<1>(text), expected, "{text:?}");
            }
        }
        assert_eq!(parse_hex_array::<2>("0aFf"), Some([0x0a, 0xff]));
        // The length must be exact, and a non-ASCII character is never a digit.
        assert_eq!(parse_hex_array::<2>("0aff0"), None);
        assert_eq!(parse_hex_array::<2>("0af"), None);
        assert_eq!(parse_hex_array::<1>("é"), None);
    }

    #[test]
    fn writes_differing_only_in_trailing_zeros_hash_apart() {
        use std::hash::{BuildHasher, Hasher};
        let state = DigestState::default();
        let hash = |bytes: &[u8]| {
            let mut hasher = state.build_hasher();
            hasher.write(bytes);
            hasher.finish()
        };
        assert_ne!(hash(&[1]), hash(&[1, 0]));
        assert_ne!(hash(&[]), hash(&[0; 8]));
    }

    #[test]
    fn digests_differing_in_any_one_byte_spread_over_the_low_bits() {
        use std::hash::BuildHasher;
        // This process's keys, and 64 fixed sets of keys, so that a rare set where the rule
        // fails shows up in every run rather than once in many.
        let fixed = (0..64u8).map(|i| {
            let digest = Hash256::digest(&[i]).0;
            let word = |at: usize| u64::from_le_bytes(digest[at..at + 8].try_into().unwrap());
            DigestState {
                keys: [word(0), word(8), word(16)],
            }
        });
        for state in std::iter::once(DigestState::default()).chain(fixed) {
            // For each byte of the key, 256 keys that differ only there: a hasher whose low
            // bits missed some input bits (a plain multiply misses a word's high bytes; a
            // folded one without the last multiply, a last word's) would put them in a
            // handful of the 4,096 buckets a table of that size indexes by its low 12 bits.
            for at in 0..32 {
                let buckets: std::collections::HashSet<u64> = (0..=255u8)
                    .map(|b| {
                        let mut key = [7u8; 32];
                        key[at] = b;
                        state.hash_one(Hash256(key)) & 0xfff
                    })
                    .collect();
                // 256 keys at random in 4,096 buckets: about 248 distinct, give or take 3.
                assert!(
                    buckets.len() > 200,
                    "keys {:?}, byte {at}: {} buckets",
                    state.keys,
                    buckets.len()
                );
            }
        }
        // And a map keyed by digests is a map.
        let mut map = DigestMap::default();
        map.insert(Hash256::digest(b"a"), 1);
        map.insert(Hash256::digest(b"b"), 2);
        assert_eq!(map.get(&Hash256::digest(b"a")), Some(&1));
        assert_eq!(map.len(), 2);
    }
}
