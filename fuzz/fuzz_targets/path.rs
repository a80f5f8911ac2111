#![no_main]
// See wasmftpd::fuzzing::path for what this checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmftpd::fuzzing::path(data));
