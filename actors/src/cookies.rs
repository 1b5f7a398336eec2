//! The cookie jar of the MCP server's origin: load balancers pin a client to one
//! backend with a cookie (and a Streamable HTTP session lives on that backend).
//! As in mcp-remote 0.15: in memory only, host-only (`Domain` is ignored), for
//! requests to the server's own origin and never another, `Secure` cookies only
//! over https, a `Cookie` header given with `--header` wins, and
//! `--disable-cookies` turns it off. Bounded: [`MAX_COOKIES`] cookies of at most
//! [`MAX_COOKIE_BYTES`] each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most cookies kept.
pub const MAX_COOKIES: usize = 50;
/// Longest `name=value` kept.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// One cookie's value and life.
#[derive(Debug, Clone)]
struct Cookie {
    value: String,
    /// Only over https.
    secure: bool,
    /// When it expires (none: until the process ends).
    expires: Option<Instant>,
}

/// The jar.
#[derive(Debug, Default)]
pub struct CookieJar {
    cookies: BTreeMap<String, Cookie>,
}

impl CookieJar {
    /// Take the `Set-Cookie` values of a response from the server's origin.
    pub fn store(&mut self, set_cookies: &[String], now: Instant) {
        for line in set_cookies {
            self.store_one(line, now);
        }
    }

    fn store_one(&mut self, line: &str, now: Instant) {
        let mut parts = line.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || name.len() + value.len() > MAX_COOKIE_BYTES {
            return;
        }
        let mut secure = false;
        let mut max_age: Option<i64> = None;
        let mut expires: Option<SystemTime> = None;
        for attribute in parts {
            let (key, val) = attribute
                .split_once('=')
                .map_or((attribute.trim(), ""), |(k, v)| (k.trim(), v.trim()));
            match key.to_ascii_lowercase().as_str() {
                "secure" => secure = true,
                "max-age" => max_age = val.parse().ok(),
                "expires" => expires = http_date(val),
                _ => {}
            }
        }
        // RFC 6265 §5.3: Max-Age wins over Expires.
        let expires_at = match (max_age, expires) {
            (Some(secs), _) if secs <= 0 => {
                self.cookies.remove(name);
                return;
            }
            (Some(secs), _) => Some(now + Duration::from_secs(secs.unsigned_abs())),
            (None, Some(at)) => match at.duration_since(SystemTime::now()) {
                Ok(left) => Some(now + left),
                Err(_) => {
                    self.cookies.remove(name);
                    return;
                }
            },
            (None, None) => None,
        };
        if !self.cookies.contains_key(name) && self.cookies.len() >= MAX_COOKIES {
            return;
        }
        self.cookies.insert(
            name.to_owned(),
            Cookie {
                value: value.to_owned(),
                secure,
                expires: expires_at,
            },
        );
    }

    /// The `Cookie` header for a request (`https`: whether it goes over TLS), if any.
    pub fn header(&mut self, https: bool, now: Instant) -> Option<String> {
        self.cookies
            .retain(|_, c| c.expires.is_none_or(|at| at > now));
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, c)| https || !c.secure)
            .map(|(name, c)| format!("{name}={}", c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send.
fn http_date(text: &str) -> Option<SystemTime> {
    let mut words = text.split_whitespace().skip(1);
    let day: i64 = words.next()?.parse().ok()?;
    let month = match words.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = words.next()?.parse().ok()?;
    let mut hms = words.next()?.split(':').map(|n| n.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_kept_replaced_expired_and_secure_only_over_https() {
        let now = Instant::now();
        let mut jar = CookieJar::default();
        assert_eq!(jar.header(true, now), None);
        jar.store(
            &[
                "AWSALB=abc; Path=/; Expires=Thu, 01 Jan 2099 00:00:00 GMT".into(),
                "sid=s1; Secure; HttpOnly; Domain=evil.example".into(),
                "short=1; Max-Age=10".into(),
                "gone=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT".into(),
                "novalue".into(),
            ],
            now,
        );
        assert_eq!(
            jar.header(true, now).as_deref(),
            Some("AWSALB=abc; short=1; sid=s1")
        );
        assert_eq!(
            jar.header(false, now).as_deref(),
            Some("AWSALB=abc; short=1")
        );
        assert_eq!(
            jar.header(true, now + Duration::from_secs(11)).as_deref(),
            Some("AWSALB=abc; sid=s1")
        );
        jar.store(&["AWSALB=def".into(), "sid=x; Max-Age=0".into()], now);
        assert_eq!(jar.header(true, now).as_deref(), Some("AWSALB=def"));
        for i in 0..100 {
            jar.store(&[format!("c{i}=v")], now);
        }
        assert_eq!(jar.cookies.len(), MAX_COOKIES);
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
    }
}
