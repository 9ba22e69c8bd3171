//! The HTTP/1.1 client codec on a backend's answer: head, then chunked body (see
//! `l7_router::fuzzing::response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| l7_router::fuzzing::response(data));
