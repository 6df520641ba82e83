//! Compiles the public API protos (`proto/ctxstore/v1`) with protox (pure Rust, no
//! system `protoc`) and tonic-prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The protos live at the top of the repository, beside the design. The crate's
    // directory is read when the script runs, not built into it: two checkouts
    // sharing one target dir may share this script's binary.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("../../proto")
        .canonicalize()?;
    let names = [
        "common.proto",
        "kv.proto",
        "cluster.proto",
        "context.proto",
        "auth.proto",
    ];
    let files = names.map(|f| root.join("ctxstore/v1").join(f));
    // Relative to this crate: cargo then checks the files of the tree being built.
    // With absolute paths, two checkouts sharing one target dir (CARGO_TARGET_DIR)
    // share this script's output, and a proto change in one went unseen in the other
    // until the script ran again for another reason.
    for f in names {
        println!("cargo:rerun-if-changed=../../proto/ctxstore/v1/{f}");
    }
    let fds = protox::compile(&files, [&root])?;
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
    Ok(())
}
