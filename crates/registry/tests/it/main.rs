//! Integration tests: real registries on `127.0.0.1:0`, driven over HTTP.
//!
//! - `harness`: start/stop replicas, an HTTP client, push helpers, a cuttable link proxy.
//! - `protocol`: every OCI endpoint and its errors.
//! - `auth`: htpasswd basic auth, the token flow, anonymous pull.
//! - `durability`: restart, resumable uploads, gc.
//! - `crash`: kill -9 of a child-process server during pushes.
//! - `replication`: 2 and 3 replicas, partitions, deletes, read-through, status.

mod auth;
mod crash;
mod durability;
mod harness;
mod protocol;
mod replication;
