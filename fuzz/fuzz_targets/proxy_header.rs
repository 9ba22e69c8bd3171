//! The PROXY protocol v1/v2 header decoder on a client's first bytes: no panic; a complete
//! header never claims more bytes than it was given, and an incomplete one asks for at least
//! one more; the same answer for the whole input and, fed a byte at a time, at the first
//! prefix that decides.
#![no_main]

use net_core::proxy_protocol::{Parsed, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Parsed::Complete { consumed, .. }) = &whole {
        assert!(*consumed <= data.len());
        // The same header is found in exactly the bytes it occupies.
        assert_eq!(
            format!("{:?}", parse(&data[..*consumed])),
            format!("{whole:?}")
        );
    }
    if let Ok(Parsed::Incomplete { needed }) = &whole {
        assert!(*needed >= 1);
    }
});
