//! In-memory backends for tests. Stub.
