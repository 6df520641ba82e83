//! End-to-end throughput through the bundled client against an in-process 3-node
//! cluster on loopback (fsync before every acknowledgement).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ctxstore::dev::{DevCluster, DevOptions};
use ctxstore_client::Client;
use futures::future::join_all;

/// Requests in flight per measured iteration.
const CONCURRENCY: u64 = 64;

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = rt
        .block_on(DevCluster::start(DevOptions {
            base_port: 0,
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }))
        .expect("cluster");
    let client = rt
        .block_on(Client::connect(&cluster.endpoints()))
        .expect("client");
    let value = bytes::Bytes::from(vec![b'x'; 1024]);
    let mut g = c.benchmark_group("cluster");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CONCURRENCY));
    g.bench_function("put-1KiB-64-concurrent", |b| {
        let mut n = 0u64;
        b.to_async(&rt).iter(|| {
            n += CONCURRENCY;
            let puts = (0..CONCURRENCY).map(|i| {
                let (c, v) = (client.clone(), value.clone());
                async move {
                    c.put(format!("k{}", (n + i) % 10_000), v)
                        .await
                        .expect("put")
                }
            });
            join_all(puts)
        })
    });
    g.bench_function("get-64-concurrent", |b| {
        b.to_async(&rt).iter(|| {
            let gets = (0..CONCURRENCY).map(|i| {
                let c = client.clone();
                async move { c.get(format!("k{i}")).await.expect("get") }
            });
            join_all(gets)
        })
    });
    g.finish();
    rt.block_on(cluster.shutdown());
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
