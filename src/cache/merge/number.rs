//! Numbers as Redis reads and writes them in values and arguments: one integer rule for the RESP
//! door and the merge code, floats, and their text form.

use super::Num;

/// An integer as Redis reads one (`string2ll`), in a value (`INCR`) or an argument or a
/// protocol length: an optional `-`, then digits without a leading zero (`0` alone is zero; `-0`,
/// `007`, `+1` and spaces are not integers), within `i64`.
///
/// ```
/// use leafcache::merge::parse_int;
/// assert_eq!(parse_int(b"-42"), Some(-42));
/// assert_eq!(parse_int(b"007"), None);
/// ```
pub fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    match digits {
        [] | [b'0', _, ..] => return None,
        [b'0'] if neg => return None,
        _ if digits.len() > 19 => return None,
        _ => {}
    }
    // Accumulated negatively, so that i64::MIN, which has no positive twin, parses too.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg { Some(n) } else { n.checked_neg() }
}

/// A number as Redis reads one from a value: an integer, or a finite float without spaces.
pub fn parse_num(b: &[u8]) -> Option<Num> {
    if let Some(i) = parse_int(b) {
        return Some(Num::Int(i));
    }
    parse_float(b).map(Num::Float)
}

/// A float as Redis reads one (`strtold`: decimal or exponent form, no spaces, finite).
pub fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty()
        || s.starts_with(|c: char| c.is_whitespace())
        || s.ends_with(char::is_whitespace)
    {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A number as Redis writes one: integers plainly, floats without exponent and without
/// trailing zeros. Redis sums floats in `long double`; this sums in `f64`, so a result is shown
/// with at most 15 significant digits when its shortest form needs more — which hides the
/// `f64` rounding of sums like `0.1 + 0.2`, as Redis's wider type does.
pub fn format_num(n: Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => format_float(f),
    }
}

/// See [`format_num`].
pub fn format_float(f: f64) -> String {
    let shortest = format!("{f}");
    let significant = shortest
        .trim_start_matches('-')
        .trim_start_matches(['0', '.'])
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    let s = if significant > 15 {
        let rounded: f64 = format!("{f:.14e}").parse().unwrap_or(f);
        format!("{rounded}")
    } else {
        shortest
    };
    if s == "-0" { "0".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_redis_string2ll() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-42"), Some(-42));
        assert_eq!(parse_int(b"10"), Some(10));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"1a",
            b" 1",
            b"1 ",
            b"007",
            b"00",
            b"-0",
            b"-01",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }
}
