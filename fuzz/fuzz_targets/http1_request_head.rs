//! Portico's own HTTP/1.1 request head parser (see `l7_router::fuzzing::request_head`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| l7_router::fuzzing::request_head(data));
