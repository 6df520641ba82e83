//! Generated protobuf types and gRPC stubs (`proto/ctxstore/v1`).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("ctxstore.v1");

/// Encoded `FileDescriptorSet` of our protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ctxstore_descriptor.bin"));

/// The subset of etcd's v3 KV API that `ctxctl bench --target etcd` uses
/// (`proto/etcd/kv_min.proto`; client only).
#[doc(hidden)]
pub mod etcd {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("etcdserverpb");
}
