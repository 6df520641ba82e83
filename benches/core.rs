//! Micro-benchmarks of the layers under a write: ring lookup, key encoding, value
//! records, batch stream messages, the Raft log mirror and the apply path.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ctxstore::bench_support::{ApplyPath, LogMirror};
use ctxstore::keys;
use ctxstore::proto::ValueRecord;
use ctxstore::ring::{Ring, DEFAULT_VNODES};
use ctxstore::ShardId;
use prost::Message;
use raft::eraftpb::Entry;
use std::hint::black_box;

fn ring(c: &mut Criterion) {
    let shards: Vec<ShardId> = (1..=16).map(ShardId).collect();
    let ring = Ring::new(&shards, DEFAULT_VNODES);
    let keys: Vec<String> = (0..1024).map(|i| format!("{{conv:{i}}}:msg:{i}")).collect();
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("lookup-16-shards", |b| {
        b.iter(|| {
            for k in &keys {
                black_box(ring.shard_for_key(k.as_bytes()));
            }
        })
    });
    g.bench_function("build-16-shards", |b| {
        b.iter(|| Ring::new(black_box(&shards), DEFAULT_VNODES))
    });
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let key = b"{conv:12345}:msg:000042";
    let mut g = c.benchmark_group("encoding");
    g.bench_function("data-key", |b| b.iter(|| keys::data_key(black_box(key))));
    let rec = ValueRecord {
        version: 42,
        create_version: 7,
        expires_at_ms: 0,
        value: vec![b'x'; 1024].into(),
        lease_id: 0,
    };
    let bytes = rec.encode_to_vec();
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("value-record-encode-1KiB", |b| {
        b.iter(|| black_box(&rec).encode_to_vec())
    });
    g.bench_function("value-record-decode-1KiB", |b| {
        b.iter(|| ValueRecord::decode(black_box(bytes.as_slice())))
    });
    g.finish();
}

/// A `Kv.BatchCommands` message of 64 puts of 1 KiB, and its answer: what one flush of
/// the client's batch stream carries under load.
fn batch_commands(c: &mut Criterion) {
    use ctxstore::proto::{
        batch_command, batch_command_result, BatchCommand, BatchCommandResult,
        BatchCommandsRequest, BatchCommandsResponse, PutRequest, PutResponse,
    };
    let req = BatchCommandsRequest {
        commands: (0..64u64)
            .map(|i| BatchCommand {
                id: i,
                traceparent: format!("00-{:032x}-{:016x}-01", i + 1, i + 1),
                cmd: Some(batch_command::Cmd::Put(PutRequest {
                    key: format!("bench-{i:08}").into_bytes().into(),
                    value: vec![b'x'; 1024].into(),
                    request_id: i.to_be_bytes().to_vec().into(),
                    ..Default::default()
                })),
            })
            .collect(),
    };
    let resp = BatchCommandsResponse {
        results: (0..64u64)
            .map(|i| BatchCommandResult {
                id: i,
                result: Some(batch_command_result::Result::Put(PutResponse {
                    version: 1_000 + i,
                    create_version: 1_000 + i,
                })),
            })
            .collect(),
    };
    let req_bytes = req.encode_to_vec();
    let resp_bytes = resp.encode_to_vec();
    let mut g = c.benchmark_group("batch-commands");
    g.throughput(Throughput::Elements(64));
    g.bench_function("encode-64-puts", |b| {
        b.iter(|| black_box(&req).encode_to_vec())
    });
    g.bench_function("decode-64-puts", |b| {
        b.iter(|| BatchCommandsRequest::decode(black_box(req_bytes.as_slice())))
    });
    g.bench_function("decode-64-put-results", |b| {
        b.iter(|| BatchCommandsResponse::decode(black_box(resp_bytes.as_slice())))
    });
    g.finish();
}

/// `n` entries of 1 KiB starting at index `first`.
fn entries(first: u64, n: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|i| Entry {
            index: i,
            term: 6,
            data: vec![0u8; 1024].into(),
            ..Default::default()
        })
        .collect()
}

fn raft_log(c: &mut Criterion) {
    let mut g = c.benchmark_group("raft-log");
    g.throughput(Throughput::Elements(100));
    g.bench_function("append-100x1KiB", |b| {
        b.iter_batched(
            || {
                let log = LogMirror::default();
                let ents = entries(log.last() + 1, 100);
                (log, ents)
            },
            |(mut log, ents)| {
                log.append(&ents);
                log
            },
            BatchSize::SmallInput,
        )
    });
    let mut log = LogMirror::default();
    let first = log.last() + 1;
    log.append(&entries(first, 10_000));
    g.bench_function("read-100x1KiB", |b| {
        b.iter(|| log.read(first + 5_000, first + 5_100))
    });
    g.finish();
    log.compact(first + 9_000);
}

fn apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut path = ApplyPath::open(dir.path()).expect("open rocksdb");
    let value = vec![b'v'; 1024];
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(64));
    g.bench_function("round-of-64-puts-1KiB", |b| {
        b.iter(|| path.apply_puts(64, &value).expect("apply"))
    });
    g.bench_function("round-of-64-appends-2-messages-1KiB", |b| {
        b.iter(|| path.apply_appends(64, &value).expect("apply"))
    });
    g.finish();
}

criterion_group!(benches, ring, encoding, batch_commands, raft_log, apply);
criterion_main!(benches);
