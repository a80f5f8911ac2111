//! Configuration. Stub.
