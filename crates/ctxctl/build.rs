//! Compiles the subset of etcd's v3 KV API that `ctxctl bench --target etcd` drives
//! (client side only), with protox (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let etcd = "proto/etcd/kv_min.proto";
    println!("cargo:rerun-if-changed={etcd}");
    let fds = protox::compile([etcd], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
