//! The few fields of a server certificate the doctor shows: who it is for (its
//! common name and DNS / IP subject alternative names), who issued it (a VPN that
//! inspects TLS shows up here as its own CA), and when it expires. A small DER
//! reader, not a validator: the TLS stack has already verified the chain and the
//! name; anything it cannot read is simply not shown.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the doctor says about a certificate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's common name.
    pub subject: Option<String>,
    /// The issuer's common name (or organization).
    pub issuer: Option<String>,
    /// DNS names and IP addresses of the subject alternative name extension.
    pub names: Vec<String>,
    /// The end of its validity.
    pub not_after: Option<SystemTime>,
}

/// One DER element: tag, contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed value's contents.
fn children(mut contents: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((tag, value, rest)) = element(contents) {
        out.push((tag, value));
        contents = rest;
        if out.len() > 64 {
            break;
        }
    }
    out
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The value of attribute `oid` in a Name.
fn name_attribute(name: &[u8], oid: &[u8]) -> Option<String> {
    for (_, set) in children(name) {
        for (_, pair) in children(set) {
            let parts = children(pair);
            if let [(0x06, id), (_, value)] = parts.as_slice() {
                if *id == oid {
                    return Some(String::from_utf8_lossy(value).into_owned());
                }
            }
        }
    }
    None
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Read what can be read of a DER certificate.
pub fn summarize(der: &[u8]) -> CertSummary {
    let mut summary = CertSummary::default();
    let Some((0x30, certificate, _)) = element(der) else {
        return summary;
    };
    let Some((0x30, tbs, _)) = element(certificate) else {
        return summary;
    };
    let mut fields = children(tbs).into_iter().peekable();
    if fields.peek().is_some_and(|(tag, _)| *tag == 0xa0) {
        fields.next(); // version
    }
    let _serial = fields.next();
    let _signature = fields.next();
    if let Some((0x30, issuer)) = fields.next() {
        summary.issuer = name_attribute(issuer, OID_COMMON_NAME)
            .or_else(|| name_attribute(issuer, OID_ORGANIZATION));
    }
    if let Some((0x30, validity)) = fields.next() {
        if let [_, (tag, value)] = children(validity).as_slice() {
            summary.not_after = time(*tag, value);
        }
    }
    if let Some((0x30, subject)) = fields.next() {
        summary.subject = name_attribute(subject, OID_COMMON_NAME);
    }
    for (tag, value) in fields {
        if tag != 0xa3 {
            continue;
        }
        let Some((0x30, extensions, _)) = element(value) else {
            continue;
        };
        for (_, extension) in children(extensions) {
            let parts = children(extension);
            let Some((0x06, id)) = parts.first() else {
                continue;
            };
            if *id != OID_SUBJECT_ALT_NAME {
                continue;
            }
            let Some((0x04, octets)) = parts.last() else {
                continue;
            };
            let Some((0x30, general_names, _)) = element(octets) else {
                continue;
            };
            for (tag, name) in children(general_names) {
                match (tag, name.len()) {
                    (0x82, _) => summary
                        .names
                        .push(String::from_utf8_lossy(name).into_owned()),
                    (0x87, 4) => summary.names.push(
                        std::net::Ipv4Addr::new(name[0], name[1], name[2], name[3]).to_string(),
                    ),
                    (0x87, 16) => {
                        let mut octets = [0u8; 16];
                        octets.copy_from_slice(name);
                        summary
                            .names
                            .push(std::net::Ipv6Addr::from(octets).to_string());
                    }
                    _ => {}
                }
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_like_the_calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 5), 20_792);
        let t = time(0x17, b"261205080000Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            20_792 * 86_400 + 8 * 3600
        );
        let g = time(0x18, b"20500101000000Z").unwrap();
        assert_eq!(
            g.duration_since(UNIX_EPOCH).unwrap().as_secs() / 86_400,
            days_from_civil(2050, 1, 1) as u64
        );
        assert_eq!(time(0x17, b"garbage"), None);
    }

    #[test]
    fn junk_is_an_empty_summary() {
        assert_eq!(summarize(&[]), CertSummary::default());
        assert_eq!(summarize(&[0x30, 0x84, 0xff]), CertSummary::default());
        assert_eq!(summarize(&[0x30, 0x02, 0x30, 0x00]), CertSummary::default());
    }
}
