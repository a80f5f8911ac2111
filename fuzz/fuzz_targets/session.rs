#![no_main]
// See wasmftpd::fuzzing::session for what this checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmftpd::fuzzing::session(data));
