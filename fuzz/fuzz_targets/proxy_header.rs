#![no_main]
// See wasmftpd::fuzzing::proxy_header for what this checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmftpd::fuzzing::proxy_header(data));
