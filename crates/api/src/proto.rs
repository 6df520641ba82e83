//! Generated protobuf types and gRPC stubs of the public API (`proto/ctxstore/v1`).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("ctxstore.v1");

/// Encoded `FileDescriptorSet` of the public protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ctxstore_descriptor.bin"));

/// The largest value size a cluster may be configured to accept
/// (`limits.max-value-size` is at most this).
pub const MAX_VALUE_SIZE_CAP: u64 = 64 << 20;

/// Largest gRPC message a client or server accepts: the largest configurable value
/// plus room for the request around it.
pub const MAX_MESSAGE_SIZE: usize = MAX_VALUE_SIZE_CAP as usize + (16 << 20);
