//! Generated protobuf types and gRPC stubs (`proto/ctxstore/v1`).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("ctxstore.v1");

/// Encoded `FileDescriptorSet` of our protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ctxstore_descriptor.bin"));
