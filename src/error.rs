//! The error type is the API's (`ctxstore_api::Error`, one enum for clients and
//! servers); this module adds how the server's own libraries' errors become it.
//! RocksDB, raft-rs and protobuf 2 are not dependencies of the API crate, so the
//! conversions are explicit: `result.err_into()?`.

pub use ctxstore_api::error::*;

/// An error of one of the server's libraries.
pub(crate) trait IntoError {
    /// The crate error this one maps to.
    fn into_error(self) -> Error;
}

impl IntoError for rocksdb::Error {
    fn into_error(self) -> Error {
        Error::Storage(self.to_string())
    }
}

impl IntoError for protobuf::ProtobufError {
    fn into_error(self) -> Error {
        Error::Storage(format!("corrupt raft record: {self}"))
    }
}

impl IntoError for raft::Error {
    fn into_error(self) -> Error {
        Error::Raft(self.to_string())
    }
}

/// `err_into()` on results of the server's libraries.
pub(crate) trait ErrInto<T> {
    /// Maps the error into the crate error.
    fn err_into(self) -> Result<T>;
}

impl<T, E: IntoError> ErrInto<T> for std::result::Result<T, E> {
    fn err_into(self) -> Result<T> {
        self.map_err(IntoError::into_error)
    }
}
