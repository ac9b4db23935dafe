//! Times on the command line (`--to-time`, `--since`, `--until`) and times on the screen.
//!
//! Pure: "now" is always passed in, so a duration ago (`2h`) becomes the same absolute time in a
//! test every run. Times are whole seconds: that is all a Kubernetes `Time` keeps.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// `text` as an absolute time: an RFC 3339 time (`2026-11-29T10:00:00Z`, any offset), or a
/// duration ago (`10m`, `2h`, `1d`, `1h30m`; units `d`, `h`, `m`, `s`) counted back from
/// `now`. Truncated to whole seconds. `None` when it is neither.
pub fn parse_time(text: &str, now: Timestamp) -> Option<Timestamp> {
    let t = match ago(text) {
        Some(secs) => now.checked_sub(SignedDuration::from_secs(secs)).ok()?,
        None => text.parse::<Timestamp>().ok()?,
    };
    Timestamp::from_second(t.as_second()).ok()
}

/// Seconds of a duration written as `<integer><unit>` parts, units `d`, `h`, `m`, `s`.
fn ago(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        let unit = match rest.as_bytes().get(digits)? {
            b'd' => 86_400,
            b'h' => 3_600,
            b'm' => 60,
            b's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[digits + 1..];
    }
    Some(total)
}

/// `t` as `2026-03-01T10:15:30Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Milliseconds since the epoch as `2026-03-01T10:15:30Z`; `-` when out of range.
pub fn rfc3339_millis(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(rfc3339)
        .unwrap_or_else(|_| "-".into())
}

/// A duration for people: `4m12s`, `3h5m`, `2d1h`, `0s` (the two largest units).
pub fn human(secs: i64) -> String {
    let secs = secs.max(0);
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let Some(first) = units.iter().position(|(_, size)| secs >= *size) else {
        return "0s".into();
    };
    let (u1, s1) = units[first];
    let mut out = format!("{}{u1}", secs / s1);
    if let Some((u2, s2)) = units.get(first + 1) {
        out.push_str(&format!("{}{u2}", (secs % s1) / s2));
    }
    out
}

/// `t` with how long before `now` it was: `2026-03-01T10:00:00Z (15m30s ago)`.
pub fn with_age(t: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    if secs < 0 {
        return rfc3339(t);
    }
    format!("{} ({} ago)", rfc3339(t), human(secs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-03-01T10:15:30.250Z".parse().unwrap()
    }

    #[test]
    fn durations_ago_and_absolute_times() {
        let at = |s: &str| parse_time(s, now()).map(rfc3339);
        assert_eq!(at("2h").as_deref(), Some("2026-03-01T08:15:30Z"));
        assert_eq!(at("1d2h").as_deref(), Some("2026-02-28T08:15:30Z"));
        assert_eq!(at("0s").as_deref(), Some("2026-03-01T10:15:30Z"));
        assert_eq!(
            at("2026-03-01T12:00:00+02:00").as_deref(),
            Some("2026-03-01T10:00:00Z")
        );
        for bad in ["", "2", "h", "2w", "2h-", "-2h", "yesterday", "2026-03-01"] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
        assert_eq!(at("99999999999999999999d"), None, "overflow");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(59), "59s");
        assert_eq!(human(930), "15m30s");
        assert_eq!(human(3600), "1h0m");
        assert_eq!(human(90_061), "1d1h");
    }
}
