//! Redis' glob matching (`stringmatchlen` in Redis' `util.c`, case-sensitive),
//! so a pattern selects here exactly the channels `PSUBSCRIBE` pushes and
//! `consume.lua` reads: `*`, `?`, `[abc]`, `[^a]`, `[a-z]` and `\` escapes, with
//! byte ranges compared as C's signed chars. General glob crates differ from it
//! (path separators, unterminated classes, escapes), which would make a read
//! disagree with the pushes.

/// A pattern, ready to match channel names.
#[derive(Debug)]
pub(crate) struct Glob<'a> {
    /// The pattern's bytes.
    pattern: &'a [u8],
    /// For the common `<prefix>*`: the prefix, matched by a comparison.
    prefix: Option<&'a [u8]>,
}

impl<'a> Glob<'a> {
    /// `pattern`, as a Redis glob.
    pub(crate) fn new(pattern: &'a str) -> Self {
        let pattern = pattern.as_bytes();
        let prefix = match pattern.split_last() {
            Some((b'*', prefix)) if !prefix.iter().any(|b| b"*?[\\".contains(b)) => Some(prefix),
            _ => None,
        };
        Glob { pattern, prefix }
    }

    /// Whether `name` matches.
    pub(crate) fn matches(&self, name: &[u8]) -> bool {
        match self.prefix {
            Some(prefix) => name.starts_with(prefix),
            None => matches(self.pattern, name, &mut false, 0),
        }
    }
}

/// `stringmatchlen_impl`, index for index: reads past the pattern's end see
/// the NUL that ends a C string.
fn matches(p: &[u8], s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    let (mut pi, mut si) = (0, 0);
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while pi + 1 < p.len() && p[pi + 1] == b'*' {
                    pi += 1;
                }
                if pi + 1 == p.len() {
                    return true;
                }
                while si < s.len() {
                    if matches(&p[pi + 1..], &s[si..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negate = at(pi) == b'^';
                if negate {
                    pi += 1;
                }
                let c = s[si];
                let mut matched = false;
                loop {
                    if at(pi) == b'\\' && p.len() - pi >= 2 {
                        pi += 1;
                        matched |= p[pi] == c;
                    } else if at(pi) == b']' {
                        break;
                    } else if pi >= p.len() {
                        // An unterminated class ends with the pattern.
                        pi -= 1;
                        break;
                    } else if p.len() - pi >= 3 && p[pi + 1] == b'-' {
                        let (mut lo, mut hi) = (p[pi] as i8, p[pi + 2] as i8);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        pi += 2;
                        matched |= (lo..=hi).contains(&(c as i8));
                    } else {
                        matched |= p[pi] == c;
                    }
                    pi += 1;
                }
                if matched == negate {
                    return false;
                }
                si += 1;
            }
            first => {
                let mut c = first;
                if c == b'\\' && p.len() - pi >= 2 {
                    pi += 1;
                    c = p[pi];
                }
                if c != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi >= p.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).matches(name.as_bytes())
    }

    #[test]
    fn redis_globs() {
        let yes = [
            ("*", "a"),
            ("user.*", "user.1"),
            ("user.*", "user."),
            ("user.*.events", "user.12.events"),
            ("*.x", "a.b.x"),
            ("a?c", "abc"),
            ("[ab]x", "bx"),
            ("[^ab]x", "cx"),
            ("[a-c]", "b"),
            ("[c-a]", "b"),
            ("a\\*", "a*"),
            ("[\\]]", "]"),
            ("a**b", "ab"),
            ("a*", "a"),
            ("[abc", "c"),
            ("ü*", "ünï"),
            ("*ï", "ünï"),
        ];
        for (pattern, name) in yes {
            assert!(m(pattern, name), "{pattern} should match {name}");
        }
        let no = [
            ("user.*", "users.1"),
            ("user.*.events", "user.12.orders"),
            ("a?c", "ac"),
            ("[^ab]x", "ax"),
            ("[a-c]", "d"),
            ("a\\*", "ab"),
            ("a", "ab"),
            ("ab", "a"),
            ("*.x", "a.b.y"),
            ("[abc", "d"),
        ];
        for (pattern, name) in no {
            assert!(!m(pattern, name), "{pattern} should not match {name}");
        }
    }

    #[test]
    fn abusive_patterns_end() {
        let pattern = "*a".repeat(40) + "b";
        assert!(!m(&pattern, &"a".repeat(200)));
    }
}
