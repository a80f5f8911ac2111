#![no_main]
// See wasmftpd::fuzzing::line_reader for what this checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmftpd::fuzzing::line_reader(data));
