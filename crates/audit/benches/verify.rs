//! `cargo bench -p audit --bench verify`: offline verification speed of a 1,000,000-record log
//! (leaf recomputation, seq checks, tree rebuild, one stored head and checkpoints every 10,000
//! records). Target: at least 1 M records/s.

use audit::{AuditRecord, Checkpoint, Frontier, Hash, LogVerifier, SignedCheckpoint};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;

const RECORDS: u64 = 1_000_000;
const ORIGIN: &str = "signalbox/audit/tn_0195f4a2c3d47e8f9a0b1c2d3e4f5a6b";
const TENANT: &str = "tn_0195f4a2c3d47e8f9a0b1c2d3e4f5a6b";

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[1; 32]);
    let events = ["received", "redacted", "scored", "routed", "processed"];
    let mut frontier = Frontier::new();
    let mut checkpoints = Vec::new();
    let records: Vec<(AuditRecord, Hash)> = (0..RECORDS)
        .map(|seq| {
            let record = AuditRecord {
                tenant_id: TENANT.to_owned(),
                seq,
                at_ms: 1_767_225_600_000 + seq as i64,
                item_id: format!("fb_0195f4a2c3d47e8f9a0b{:012x}", seq / 5),
                event: events[(seq % 5) as usize].to_owned(),
                actor: "key_0195f4a2c3d47e8f9a0b1c2d3e4f5a6b".to_owned(),
                detail_hash: [(seq % 251) as u8; 32],
            };
            let leaf = record.leaf_hash();
            frontier.append(leaf);
            if frontier.size().is_multiple_of(10_000) {
                checkpoints.push(sign(&key, frontier.size(), frontier.root()));
            }
            (record, leaf)
        })
        .collect();
    let head = Some((frontier.size(), frontier.root()));
    let verifying = key.verifying_key();

    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("log_1m_records", |b| {
        b.iter(|| {
            let mut verifier =
                LogVerifier::new(TENANT, ORIGIN, &verifying, head, &checkpoints, &[]).unwrap();
            for (record, leaf) in &records {
                verifier.push(record, leaf).unwrap();
            }
            verifier.finish().unwrap()
        })
    });
    group.finish();
}

fn sign(key: &SigningKey, size: u64, root: Hash) -> SignedCheckpoint {
    Checkpoint {
        origin: ORIGIN.to_owned(),
        size,
        root,
        at_ms: 1_767_225_600_000,
    }
    .sign(key)
    .unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
