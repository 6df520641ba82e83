//! Compiles the server's internal protos (`proto/ctxstore/internal/v1`: the Raft
//! transport, replicated commands and persisted records) with protox (pure Rust, no
//! system `protoc`). Types of the public API they use come from `ctxstore-api`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ctxstore/internal/v1/raft.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed=proto/ctxstore/v1");
    let fds = protox::compile(files, ["proto"])?;
    // BTreeMap for proto maps: records are re-encoded in the state machine, and every
    // replica must write the same bytes (HashMap iteration order is random).
    tonic_prost_build::configure()
        .bytes(".")
        .btree_map(".")
        .extern_path(".ctxstore.v1", "::ctxstore_api::proto")
        .compile_fds(fds)?;
    Ok(())
}
