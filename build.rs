//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and tonic-prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/ctxstore/v1/kv.proto",
        "proto/ctxstore/v1/cluster.proto",
        "proto/ctxstore/v1/raft.proto",
        "proto/ctxstore/v1/context.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ctxstore_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // BTreeMap for proto maps: records are re-encoded in the state machine, and every
    // replica must write the same bytes (HashMap iteration order is random).
    tonic_prost_build::configure()
        .bytes(".")
        .btree_map(".")
        .compile_fds(fds)?;
    // etcd's KV API, client side only, for `ctxctl bench --target etcd`; kept out of
    // the descriptor set served by reflection.
    let etcd = "proto/etcd/kv_min.proto";
    println!("cargo:rerun-if-changed={etcd}");
    let etcd_fds = protox::compile([etcd], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_server(false)
        .compile_fds(etcd_fds)?;
    Ok(())
}
