//! Code generated from `proto/` at build time (protox + tonic-prost-build, no system protoc):
//! the messages, clients and servers of `todo.auth.v1` and `todo.task.v1`, the error reasons
//! of `todo.errors.v1` ([`ErrorReason`]), and the descriptor set reflection serves.
#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, missing_docs)]

/// `todo.*` packages.
pub mod todo {
    /// `todo.auth.*` packages.
    pub mod auth {
        /// `todo.auth.v1`: accounts, sessions and tokens.
        pub mod v1 {
            tonic::include_proto!("todo.auth.v1");
        }
    }
    /// `todo.errors.*` packages.
    pub mod errors {
        /// `todo.errors.v1`: the stable `ErrorInfo.reason` of every error.
        pub mod v1 {
            tonic::include_proto!("todo.errors.v1");
        }
    }
    /// `todo.task.*` packages.
    pub mod task {
        /// `todo.task.v1`: each user's tasks.
        pub mod v1 {
            tonic::include_proto!("todo.task.v1");
        }
        /// `todo.task.internal.*` packages.
        pub mod internal {
            /// `todo.task.internal.v1`: what the auth-service asks of the task-service.
            pub mod v1 {
                tonic::include_proto!("todo.task.internal.v1");
            }
        }
    }
}

pub use todo::errors::v1::ErrorReason;

/// Encoded `FileDescriptorSet` of every `.proto` file under `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("todo_descriptor");

/// Converts a UTC time to a protobuf `Timestamp`.
pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        // Always below 2e9, so the conversion cannot fail; 0 is a safe fallback.
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}
