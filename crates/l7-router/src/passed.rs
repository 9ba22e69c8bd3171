//! Request fields that Portico passes on without reading them: where each sits in the bytes of
//! the head it came in, to be written to an HTTP/1.1 backend as they are.
//!
//! A `HeaderMap` costs about a thousand instructions per field (a name object, a value object,
//! a hash insert), and a browser sends ten to fifteen fields (accept-*, cookie, user-agent,
//! sec-fetch-*...) that no part of Portico reads. Portico's own HTTP/1.1 server puts in the map
//! only the fields something reads or rewrites ([`crate::headers::read_field`]: host, framing,
//! hop-by-hop and forwarding fields) and keeps the others here; all of them go in the map when
//! `Connection` names a field to drop at this hop. A name the config reads (a route's header match, the
//! request-id header) is moved into the map before routing, and everything is, for an HTTP/2
//! backend or an upgrade, which go through hyper's client. hyper's server puts every field in
//! the map, as before.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Where one field's name and value sit in a head's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldAt {
    pub name: (usize, usize),
    pub value: (usize, usize),
}

/// Fields of one request head, in the order they came, as positions in its bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PassedFields {
    head: Bytes,
    fields: Vec<FieldAt>,
}

impl PassedFields {
    /// `fields` are positions in `head`, as the parser found them (httparse: names are
    /// tokens, values visible characters, spaces, tabs and obs-text, exactly what `http`
    /// accepts).
    pub(crate) fn new(head: Bytes, fields: Vec<FieldAt>) -> Self {
        Self { head, fields }
    }

    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// (name as received, value) of each field, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter().map(|at| {
            (
                &self.head[at.name.0..at.name.1],
                &self.head[at.value.0..at.value.1],
            )
        })
    }

    /// Moves the fields called `name` into `map`, after any it has, in order.
    pub(crate) fn move_named(
        &mut self,
        name: &HeaderName,
        map: &mut HeaderMap,
    ) -> Result<(), http::Error> {
        let wanted = name.as_str().as_bytes();
        if !self.iter().any(|(n, _)| n.eq_ignore_ascii_case(wanted)) {
            return Ok(());
        }
        let mut moved = Ok(());
        let head = &self.head;
        self.fields.retain(|at| {
            if !head[at.name.0..at.name.1].eq_ignore_ascii_case(wanted) {
                return true;
            }
            if moved.is_ok() {
                moved = value_at(head, at).map(|value| {
                    map.append(name.clone(), value);
                });
            }
            false
        });
        moved
    }

    /// Moves every field into `map`, in order.
    pub(crate) fn move_all(&mut self, map: &mut HeaderMap) -> Result<(), http::Error> {
        map.reserve(self.fields.len());
        for at in std::mem::take(&mut self.fields) {
            let name = HeaderName::from_bytes(&self.head[at.name.0..at.name.1])?;
            map.append(name, value_at(&self.head, &at)?);
        }
        Ok(())
    }

    /// Writes each field as it came, from its name to the end of its value, then CRLF; its
    /// name in lower case, as the fields of a `HeaderMap` are written. (One copy per field:
    /// between name and value there is only the colon and optional whitespace, as httparse
    /// takes no line folding in a request.)
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for at in &self.fields {
            let start = out.len();
            if at.value.1 > at.name.1 {
                out.extend_from_slice(&self.head[at.name.0..at.value.1]);
            } else {
                // (Not from httparse, whose values follow their colon.)
                out.extend_from_slice(&self.head[at.name.0..at.name.1]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&self.head[at.value.0..at.value.1]);
            }
            out[start..start + (at.name.1 - at.name.0)].make_ascii_lowercase();
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn value_at(head: &Bytes, at: &FieldAt) -> Result<HeaderValue, http::Error> {
    Ok(HeaderValue::from_maybe_shared(
        head.slice(at.value.0..at.value.1),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::is_read_by_portico;

    /// `head` holds `name: value` lines; the fields are found with httparse, as the server
    /// finds them.
    fn passed(head: &'static str) -> PassedFields {
        let bytes = Bytes::from_static(head.as_bytes());
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let status = httparse::parse_headers(&bytes, &mut fields).unwrap();
        let httparse::Status::Complete((_, parsed)) = status else {
            panic!("partial: {head:?}");
        };
        let base = bytes.as_ptr() as usize;
        let at = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            (start, start + s.len())
        };
        let fields = parsed
            .iter()
            .map(|f| FieldAt {
                name: at(f.name.as_bytes()),
                value: at(f.value),
            })
            .collect();
        PassedFields::new(bytes, fields)
    }

    #[test]
    fn the_names_portico_reads_are_known_in_any_case() {
        for name in [
            "te",
            "Host",
            "EXPECT",
            "upgrade",
            "Forwarded",
            "Connection",
            "keep-alive",
            "Content-Length",
            "X-Forwarded-For",
            "proxy-connection",
            "x-forwarded-host",
            "Transfer-Encoding",
            "X-Forwarded-Proto",
            "proxy-authenticate",
            "Proxy-Authorization",
        ] {
            assert!(is_read_by_portico(name.as_bytes()), "{name}");
        }
        for name in [
            "t",
            "tee",
            "hosts",
            "accept",
            "cookie",
            "user-agent",
            "x-forwarded-port",
            "x-request-id",
            "content-type",
            "connectio",
            "",
        ] {
            assert!(!is_read_by_portico(name.as_bytes()), "{name}");
        }
    }

    /// (The whitespace between colon and value goes as it came: it means nothing.)
    #[test]
    fn fields_are_written_in_order_with_names_in_lower_case() {
        let fields = passed("Accept: */*\r\nX-Custom:  a b \r\nCookie: a=1\r\ncookie: b=2\r\n\r\n");
        assert_eq!(fields.len(), 4);
        let mut out = Vec::new();
        fields.encode(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "accept: */*\r\nx-custom:  a b\r\ncookie: a=1\r\ncookie: b=2\r\n"
        );
    }

    /// Positions that do not come from httparse (a value that does not follow its name) are
    /// still written as a whole field: name, colon, value.
    #[test]
    fn a_value_before_its_name_is_still_written_as_a_field() {
        let fields = PassedFields::new(
            Bytes::from_static(b"1X-A"),
            vec![FieldAt {
                name: (1, 4),
                value: (0, 1),
            }],
        );
        let mut out = Vec::new();
        fields.encode(&mut out);
        assert_eq!(out, b"x-a: 1\r\n");
    }

    #[test]
    fn a_named_field_moves_to_the_map_with_every_value_in_order() {
        let mut fields = passed("A: 1\r\nX-Tenant: t1\r\nB: 2\r\nx-tenant: t2\r\n\r\n");
        let mut map = HeaderMap::new();
        let tenant = HeaderName::from_static("x-tenant");
        fields.move_named(&tenant, &mut map).unwrap();
        let values: Vec<_> = map.get_all(&tenant).iter().collect();
        assert_eq!(values, ["t1", "t2"]);
        let rest: Vec<_> = fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(
            rest,
            [
                (b"A".to_vec(), b"1".to_vec()),
                (b"B".to_vec(), b"2".to_vec())
            ]
        );
        // A name that is not there changes nothing.
        fields
            .move_named(&HeaderName::from_static("absent"), &mut map)
            .unwrap();
        assert_eq!(fields.len(), 2);

        fields.move_all(&mut map).unwrap();
        assert!(fields.is_empty());
        assert_eq!(map.len(), 4);
        assert_eq!(map["a"], "1");
        assert_eq!(map["b"], "2");
    }
}
