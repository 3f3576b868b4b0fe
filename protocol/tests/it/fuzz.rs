//! The fuzz targets' inputs on stable: the committed seed corpus of `fuzz/`, arbitrary bytes,
//! and corpus files with random bytes changed, through the same `protocol::fuzzing` entry points
//! the `cargo fuzz` targets call. None may panic.

use std::path::PathBuf;

use proptest::prelude::*;
use protocol::fuzzing;

/// The files of one target's seed corpus.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("a corpus entry").path()).expect("a corpus file"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs each target on its whole seed corpus.
#[test]
fn the_seed_corpus_passes_every_target() {
    for input in corpus("codec") {
        fuzzing::codec(&input);
    }
    for input in corpus("parse") {
        fuzzing::parse(&input);
    }
    for input in corpus("block") {
        fuzzing::block(&input);
    }
}

/// A corpus file with some bytes replaced: close enough to valid to reach deep into parsing.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let files = corpus(target);
    (
        0..files.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    )
        .prop_map(move |(i, changes)| {
            let mut bytes = files[i].clone();
            for (at, byte) in changes {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            bytes
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_pass_every_target(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        fuzzing::codec(&bytes);
        fuzzing::parse(&bytes);
        fuzzing::block(&bytes);
    }

    #[test]
    fn mutated_lines_pass_the_codec(bytes in mutated("codec")) {
        fuzzing::codec(&bytes);
    }

    #[test]
    fn mutated_lines_pass_the_parser(bytes in mutated("parse")) {
        fuzzing::parse(&bytes);
    }

    #[test]
    fn mutated_blocks_pass_validation(bytes in mutated("block")) {
        fuzzing::block(&bytes);
    }
}
