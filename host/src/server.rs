//! Listeners. Stub.
