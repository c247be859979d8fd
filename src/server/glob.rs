//! Redis-style glob patterns over byte strings, for `KEYS` and `SCAN MATCH`.
//!
//! `*` any run of bytes, `?` one byte, `[abc]` / `[^abc]` / `[a-z]` a class, `\x` a literal `x`.
//! Keys are arbitrary bytes, so this works on `&[u8]`; the usual glob crates match UTF-8 paths.
//! Matching is iterative with one backtrack point per `*`, so a hostile pattern like `*a*a*a*b`
//! costs O(pattern × key), not exponential time.

/// Whether `key` matches `pattern`.
pub(crate) fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    // Where to resume after the last `*`: the pattern index after it, and the key index it
    // currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, k));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    k += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, next)) = class(&pattern[p..], key[k])
                        && hit
                    {
                        p += next;
                        k += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == key[k] {
                        p += 2;
                        k += 1;
                        continue;
                    }
                }
                c => {
                    if c == key[k] {
                        p += 1;
                        k += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last `*` swallow one more byte, or fail.
        match star {
            Some((sp, sk)) => {
                p = sp;
                k = sk + 1;
                star = Some((sp, sk + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class opening `pattern` (`[...]`): whether it matched and the class's
/// length. An unclosed `[` is a literal `[`.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    closed_class(pattern, c).or_else(|| (c == b'[').then_some((true, 1)))
}

fn closed_class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &b = pattern.get(i)?;
        if b == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let lo = if b == b'\\' {
            i += 1;
            *pattern.get(i)?
        } else {
            b
        };
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let hi = pattern[i + 2];
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            hit |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_cases() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("user:*", "user:42"),
            ("*:42", "user:42"),
            ("a\\*b", "a*b"),
            ("[", "["),
            ("*a*b", "xaxxb"),
        ];
        for (p, k) in yes {
            assert!(matches(p.as_bytes(), k.as_bytes()), "{p} should match {k}");
        }
        let no: &[(&str, &str)] = &[
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("user:*", "users:1"),
            ("a\\*b", "axb"),
            ("abc", "abcd"),
            ("", "a"),
        ];
        for (p, k) in no {
            assert!(
                !matches(p.as_bytes(), k.as_bytes()),
                "{p} should not match {k}"
            );
        }
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let key = vec![b'a'; 10_000];
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*b";
        assert!(!matches(pattern, &key));
    }
}
