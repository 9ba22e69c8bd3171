//! The PROXY protocol v1/v2 header decoder on a client's first bytes: no panic; a complete
//! header never claims more bytes than it was given and decodes the same from exactly its own
//! bytes; an incomplete one asks for at least one more, and (the contract the listener reads
//! by) never for more than the header still has: every prefix of a complete header is
//! incomplete and asks for at most the bytes up to its end.
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
        for k in 0..*consumed {
            match parse(&data[..k]) {
                Ok(Parsed::Incomplete { needed }) => {
                    assert!(needed >= 1 && k + needed <= *consumed, "{k} + {needed}")
                }
                other => panic!("prefix of {k} bytes of a {consumed}-byte header: {other:?}"),
            }
        }
    }
    if let Ok(Parsed::Incomplete { needed }) = &whole {
        assert!(*needed >= 1);
    }
});
