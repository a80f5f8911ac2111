#![no_main]
// See wasmftpd::fuzzing::config for what this checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmftpd::fuzzing::config(data));
