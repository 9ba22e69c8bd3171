//! The two certificate fields that rustls and webpki do not expose: the leaf's `notAfter` and its
//! subject common name. A minimal DER reader (definite lengths only, as DER requires) over
//! certificates webpki has already parsed; anything unexpected yields `None`, never a panic.

use std::time::{Duration, SystemTime};

const TAG_INTEGER: u8 = 0x02;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT Version` of a TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// Longest length field read: 4 bytes (4 GiB), far above any certificate.
const MAX_LENGTH_BYTES: usize = 4;
const SECONDS_PER_DAY: i64 = 86_400;

/// The `notAfter` of a DER certificate, or `None` if unreadable or before 1970.
pub(super) fn not_after(cert_der: &[u8]) -> Option<SystemTime> {
    let (certificate, _) = expect(cert_der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(certificate, TAG_SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&TAG_VERSION) {
        rest = expect(rest, TAG_VERSION)?.1;
    }
    let (_serial, rest) = expect(rest, TAG_INTEGER)?;
    let (_signature, rest) = expect(rest, TAG_SEQUENCE)?;
    let (_issuer, rest) = expect(rest, TAG_SEQUENCE)?;
    let (validity, _) = expect(rest, TAG_SEQUENCE)?;
    let (_not_before, _, rest) = read_tlv(validity)?;
    let (tag, not_after, _) = read_tlv(rest)?;
    let seconds = unix_seconds(tag, not_after)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// The last common name of a DER `Name`'s contents (the RDNSequence without its outer
/// SEQUENCE header, as `webpki::Cert::subject` gives it), if it is a UTF-8, printable or IA5
/// string.
pub(super) fn common_name(subject: &[u8]) -> Option<&str> {
    let mut found = None;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (rdn, rest) = expect(rdns, TAG_SET)?;
        rdns = rest;
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (attribute, rest) = expect(attributes, TAG_SEQUENCE)?;
            attributes = rest;
            let (oid, value) = expect(attribute, TAG_OID)?;
            if oid != OID_COMMON_NAME {
                continue;
            }
            let (tag, value, _) = read_tlv(value)?;
            if matches!(tag, TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING) {
                found = std::str::from_utf8(value).ok();
            }
        }
    }
    found
}

/// Reads one TLV: `(tag, value, rest)`.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high-tag-number form: never in the fields read here
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > MAX_LENGTH_BYTES {
            return None; // indefinite length (BER, not DER) or absurdly long
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    let (value, rest) = rest.split_at_checked(length)?;
    Some((tag, value, rest))
}

/// Reads one TLV that must carry `tag`: `(value, rest)`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, value, rest) = read_tlv(input)?;
    (found == tag).then_some((value, rest))
}

/// Seconds since the Unix epoch of an X.509 time: UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or
/// GeneralizedTime `YYYYMMDDHHMMSSZ`, the only forms RFC 5280 allows.
fn unix_seconds(tag: u8, time: &[u8]) -> Option<i64> {
    let (year, rest) = match tag {
        TAG_UTC_TIME if time.len() == 13 => {
            let year = digits(&time[..2])?;
            (
                if year < 50 { 2000 + year } else { 1900 + year },
                &time[2..],
            )
        }
        TAG_GENERALIZED_TIME if time.len() == 15 => (digits(&time[..4])?, &time[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second)
}

/// The decimal value of ASCII digits.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_generalized_times_convert_to_unix_seconds() {
        assert_eq!(unix_seconds(TAG_UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(
            unix_seconds(TAG_UTC_TIME, b"491231235959Z"),
            Some(2_524_607_999)
        );
        assert_eq!(
            unix_seconds(TAG_UTC_TIME, b"500101000000Z"),
            Some(-631_152_000)
        );
        assert_eq!(
            unix_seconds(TAG_GENERALIZED_TIME, b"20240229120000Z"),
            Some(1_709_208_000)
        );
        assert_eq!(
            unix_seconds(TAG_GENERALIZED_TIME, b"99991231235959Z"),
            Some(253_402_300_799)
        );
    }

    #[test]
    fn malformed_times_are_rejected() {
        for (tag, time) in [
            (TAG_UTC_TIME, &b"7001010000Z"[..]),        // no seconds
            (TAG_UTC_TIME, b"700101000000+"),           // no Z
            (TAG_UTC_TIME, b"701301000000Z"),           // month 13
            (TAG_GENERALIZED_TIME, b"20230229000000Z"), // not a leap year
            (TAG_GENERALIZED_TIME, b"2023010100000aZ"),
            (TAG_GENERALIZED_TIME, b"20230101240000Z"),
            (TAG_INTEGER, b"700101000000Z"),
        ] {
            assert_eq!(
                unix_seconds(tag, time),
                None,
                "{:?}",
                String::from_utf8_lossy(time)
            );
        }
    }

    #[test]
    fn truncated_or_odd_der_yields_none() {
        assert_eq!(read_tlv(&[]), None);
        assert_eq!(read_tlv(&[0x30]), None);
        assert_eq!(read_tlv(&[0x30, 0x05, 0x00]), None);
        assert_eq!(read_tlv(&[0x30, 0x80, 0x00, 0x00]), None); // indefinite length
        assert_eq!(read_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]), None); // 5 length bytes
        assert_eq!(read_tlv(&[0x1f, 0x01, 0x00]), None); // high tag number
        assert_eq!(
            read_tlv(&[0x04, 0x81, 0x01, 0xff, 0xaa]),
            Some((0x04, &[0xff][..], &[0xaa][..]))
        );
        assert_eq!(not_after(b"garbage"), None);
        // Every prefix of a real certificate: no panic, and no date until the validity is whole.
        let cert = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let der = cert.cert.der().as_ref();
        for end in 0..der.len() {
            assert_eq!(not_after(&der[..end]), None);
        }
        assert!(not_after(der).is_some());
    }

    #[test]
    fn common_name_is_the_last_cn_string() {
        // SET { SEQ { OID 2.5.4.6 (C), PrintableString "DE" } },
        // SET { SEQ { OID CN, UTF8String "first" } }, SET { SEQ { OID CN, PrintableString "x.test" } }
        let subject = [
            &[
                0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'D', b'E',
            ][..],
            &[
                0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x05,
            ],
            b"first",
            &[
                0x31, 0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x06,
            ],
            b"x.test",
        ]
        .concat();
        assert_eq!(common_name(&subject), Some("x.test"));
        assert_eq!(common_name(&subject[..13]), None);
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&subject[..subject.len() - 1]), None);
    }
}
