//! Host names on both sides of a route: the `host` pattern an operator writes (validated and
//! lowercased once, at compile time) and the `Host` header / `:authority` a client sends
//! (reduced to a lowercase name in a stack buffer on every request, without allocating).

/// Longest DNS name in its text form, without the trailing dot (RFC 1035 section 2.3.4: 255 octets
/// on the wire).
pub(super) const MAX_HOST_LEN: usize = 253;
/// Longest DNS label (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// What a route's `host` names, lowercased and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum HostPattern {
    /// `api.example.com`: that name only.
    Exact(Box<[u8]>),
    /// `*.example.com`, stored as `example.com`: any name that ends in `.example.com`, at any depth.
    Wildcard(Box<[u8]>),
}

/// Why a route's `host` pattern was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// `""` (omit `host` to match any host).
    #[error("it is empty (omit `host` to match any host)")]
    Empty,
    /// `*` alone.
    #[error("`*` alone is not a pattern (omit `host` to match any host)")]
    AnyHost,
    /// A `*` anywhere but as the whole first label (`a.*.com`, `*a.example.com`, `a*`).
    #[error("`*` is only allowed as the whole first label, as in `*.example.com`")]
    MisplacedWildcard,
    /// `a..b`, `.example.com`, `*.`.
    #[error("it has an empty label")]
    EmptyLabel,
    /// A label longer than 63 characters.
    #[error("a label is longer than 63 characters")]
    LabelTooLong,
    /// Longer than 253 characters.
    #[error("it is longer than 253 characters")]
    TooLong,
    /// Anything but ASCII letters, digits, `-` and `.` (internationalised names are written in
    /// their punycode `xn--` form; a port or an IP literal in brackets is not a host pattern).
    #[error(
        "invalid character {0:?} (only a-z, 0-9, '-' and '.'; punycode for internationalised \
         names; no port, no IPv6 literal)"
    )]
    InvalidCharacter(char),
}

/// Validates and lowercases a route's `host`: an exact name or `*.` followed by one.
/// One trailing dot is accepted and dropped, as on the request side.
pub(super) fn parse_pattern(pattern: &str) -> Result<HostPattern, HostError> {
    if pattern.is_empty() {
        return Err(HostError::Empty);
    }
    if pattern == "*" {
        return Err(HostError::AnyHost);
    }
    let (wildcard, name) = match pattern.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.contains('*') {
        return Err(HostError::MisplacedWildcard);
    }
    // One pass over the bytes (10,000 routes are parsed at every reload): the first character
    // no DNS name has, empty and overlong labels, and the lowercase copy.
    let mut lower = Vec::with_capacity(name.len());
    let (mut empty_label, mut long_label, mut label_len) = (false, false, 0usize);
    for (i, b) in name.bytes().enumerate() {
        match b {
            b'.' => {
                empty_label |= label_len == 0;
                label_len = 0;
            }
            b'-' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => {
                label_len += 1;
                long_label |= label_len > MAX_LABEL_LEN;
            }
            // Bytes before `i` are ASCII, so `i` starts a character.
            _ => {
                let c = name[i..]
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(HostError::InvalidCharacter(c));
            }
        }
        lower.push(b.to_ascii_lowercase());
    }
    empty_label |= label_len == 0;
    // Checked after the characters so that `*.` and `a..b` report the empty label, and after
    // the wildcard so that `*.*` reports the wildcard.
    if empty_label {
        return Err(HostError::EmptyLabel);
    }
    if long_label {
        return Err(HostError::LabelTooLong);
    }
    // The full name a wildcard can match is longer than its suffix by at least `x.`.
    let shortest_match = if wildcard { name.len() + 2 } else { name.len() };
    if shortest_match > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    let lower: Box<[u8]> = lower.into_boxed_slice();
    Ok(if wildcard {
        HostPattern::Wildcard(lower)
    } else {
        HostPattern::Exact(lower)
    })
}

/// Reduces a request's `Host` header or `:authority` to the lowercase name routes are keyed by,
/// written into `buf`: the `:port` suffix and one trailing dot are dropped.
///
/// Returns `None` when no host pattern can match: an empty host, one longer than
/// [`MAX_HOST_LEN`], or an IPv6 literal (`[::1]:8443`; host patterns never name one).
pub(super) fn normalize_request_host<'b>(
    authority: &str,
    buf: &'b mut [u8; MAX_HOST_LEN],
) -> Option<&'b [u8]> {
    let bytes = authority.as_bytes();
    if bytes.first() == Some(&b'[') {
        return None;
    }
    // Outside brackets a name has no `:`, so the first one starts the port.
    let name = match bytes.iter().position(|&b| b == b':') {
        Some(colon) => &bytes[..colon],
        None => bytes,
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return None;
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name);
    out.make_ascii_lowercase();
    Some(out)
}

/// The suffixes a wildcard pattern could be keyed by, longest first: for `a.b.example.com`,
/// `b.example.com`, `example.com`, `com`. A suffix always follows a dot that has a non-empty
/// label before it, so `*.example.com` never matches `example.com` or `.example.com`.
pub(super) fn wildcard_suffixes(host: &[u8]) -> impl Iterator<Item = &[u8]> {
    host.iter()
        .enumerate()
        .skip(1)
        .filter(|&(_, &b)| b == b'.')
        .map(move |(dot, _)| &host[dot + 1..])
        .filter(|suffix| !suffix.is_empty())
}
