"""Generated protobuf and gRPC stubs of proto/ctxstore/v1 (do not edit: run
clients/python/gen_protos.sh)."""
