//! The `signatures` benchmark: checking ed25519 signatures one at a time
//! ([`protocol::signature::verify`]) and in batches ([`protocol::signature::verify_batch`]),
//! per signature, on one core, beside ed25519-dalek's own (cofactorless) check as the
//! reference. A sync checks its blocks' signatures in batches of a chunk's records. Run with
//! `cargo bench -p protocol --bench signatures`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use protocol::signature::{Item, verify, verify_batch};
use protocol::{AccountId, Keypair, Signature};

fn main() {
    let keys: Vec<Keypair> = (0..256u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let accounts: Vec<AccountId> = keys.iter().map(Keypair::account).collect();
    let messages: Vec<Vec<u8>> = (0..256u32)
        .map(|i| format!("buy {i}").into_bytes())
        .collect();
    let sigs: Vec<Signature> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let items: Vec<Item> = (0..256)
        .map(|i| Item {
            account: &accounts[i],
            message: &messages[i],
            signature: &sigs[i],
        })
        .collect();

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("signatures");
    for n in [1usize, 8, 32, 64, 256] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("one at a time", n), &n, |b, &n| {
            b.iter(|| black_box(items[..n].iter().all(verify)))
        });
        group.bench_with_input(
            BenchmarkId::new("ed25519-dalek one at a time", n),
            &n,
            |b, &n| {
                b.iter(|| {
                    black_box(items[..n].iter().all(|i| {
                        use ed25519_dalek::Verifier;
                        let key = ed25519_dalek::VerifyingKey::from_bytes(&i.account.0).unwrap();
                        let sig = ed25519_dalek::Signature::from_bytes(&i.signature.0);
                        key.verify(i.message, &sig).is_ok()
                    }))
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("batch", n), &n, |b, &n| {
            b.iter(|| black_box(verify_batch(&items[..n])))
        });
    }
    group.finish();
    c.final_summary();
}
