//! The small regular-expression subset `--expect` accepts.
//!
//! xtask has no dependencies, so no `regex` crate: console checks need literals, `.`, classes
//! (`[a-z0-9_]`, `[^ ]`, `\d`, `\w`, `\s`), the quantifiers `*`, `+`, `?` and the anchors `^`
//! and `$`, matched by backtracking (patterns and lines are short). Groups and alternation are
//! refused rather than misread.

/// One position in a pattern: what it matches and how often.
#[derive(Clone, Debug, PartialEq)]
struct Atom {
    class: Class,
    min: usize,
    /// `None`: unbounded.
    max: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
enum Class {
    Any,
    Char(char),
    /// Inclusive ranges; `negated` inverts the set.
    Set {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
}

impl Class {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Any => true,
            Self::Char(want) => c == *want,
            Self::Set { ranges, negated } => {
                ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated
            }
        }
    }
}

/// A compiled `--expect` pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    source: String,
    atoms: Vec<Atom>,
    anchored_start: bool,
    anchored_end: bool,
}

impl Pattern {
    pub fn parse(source: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("--expect {source:?}: {why}"));
        let mut chars = source.chars().peekable();
        let anchored_start = chars.next_if_eq(&'^').is_some();
        let mut atoms: Vec<Atom> = Vec::new();
        let mut anchored_end = false;
        while let Some(c) = chars.next() {
            let class = match c {
                '$' if chars.peek().is_none() => {
                    anchored_end = true;
                    break;
                }
                '.' => Class::Any,
                '\\' => match chars.next() {
                    Some(escaped) => escape_class(escaped),
                    None => return bad("ends with a lone backslash"),
                },
                '[' => {
                    let negated = chars.next_if_eq(&'^').is_some();
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let lo = match chars.next() {
                            None => return bad("unclosed ["),
                            Some(']') if !first => break,
                            Some('\\') => match chars.next() {
                                Some(escaped) => match escape_class(escaped) {
                                    Class::Set { ranges: more, .. } => {
                                        ranges.extend(more);
                                        first = false;
                                        continue;
                                    }
                                    Class::Char(c) => c,
                                    Class::Any => unreachable!("escapes never yield Any"),
                                },
                                None => return bad("unclosed ["),
                            },
                            Some(c) => c,
                        };
                        first = false;
                        let hi = if chars.peek() == Some(&'-') {
                            chars.next();
                            match chars.next() {
                                Some(']') => {
                                    ranges.push((lo, lo));
                                    ranges.push(('-', '-'));
                                    break;
                                }
                                Some(hi) => hi,
                                None => return bad("unclosed ["),
                            }
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    Class::Set { ranges, negated }
                }
                '*' | '+' | '?' => return bad("quantifier with nothing before it"),
                '(' | ')' | '|' | '{' => {
                    return bad("groups, alternation and counted repeats are not supported");
                }
                c => Class::Char(c),
            };
            let (min, max) = match chars.next_if(|c| matches!(c, '*' | '+' | '?')) {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some(_) => (0, Some(1)),
                None => (1, Some(1)),
            };
            atoms.push(Atom { class, min, max });
        }
        Ok(Self {
            source: source.to_owned(),
            atoms,
            anchored_start,
            anchored_end,
        })
    }

    /// Whether the pattern matches anywhere in `line`.
    pub fn is_match(&self, line: &str) -> bool {
        let chars: Vec<char> = line.chars().collect();
        if self.anchored_start {
            return self.match_here(&self.atoms, &chars);
        }
        (0..=chars.len()).any(|start| self.match_here(&self.atoms, &chars[start..]))
    }

    fn match_here(&self, atoms: &[Atom], text: &[char]) -> bool {
        let Some((atom, rest)) = atoms.split_first() else {
            return !self.anchored_end || text.is_empty();
        };
        let available = text.iter().take_while(|&&c| atom.class.matches(c)).count();
        let most = atom.max.map_or(available, |max| max.min(available));
        // Greedy, then give back one character at a time.
        (atom.min..=most)
            .rev()
            .any(|taken| self.match_here(rest, &text[taken..]))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// The class of `\x`: `\d`, `\w`, `\s`, or the literal character.
fn escape_class(escaped: char) -> Class {
    let set = |ranges: &[(char, char)]| Class::Set {
        ranges: ranges.to_vec(),
        negated: false,
    };
    match escaped {
        'd' => set(&[('0', '9')]),
        'w' => set(&[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')]),
        's' => set(&[(' ', ' '), ('\t', '\t'), ('\r', '\r'), ('\n', '\n')]),
        'n' => Class::Char('\n'),
        't' => Class::Char('\t'),
        c => Class::Char(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, line: &str) -> bool {
        Pattern::parse(pattern).unwrap().is_match(line)
    }

    #[test]
    fn literals_match_anywhere_unless_anchored() {
        assert!(m("hello", "HARNESS-GUEST: hello from Linux"));
        assert!(!m("hello", "HARNESS-GUEST: Hello"));
        assert!(m("^HARNESS", "HARNESS-GUEST: hello"));
        assert!(!m("^GUEST", "HARNESS-GUEST: hello"));
        assert!(m("status 0$", "ringbolt: exit status 0"));
        assert!(!m("status 0$", "ringbolt: exit status 0 (panic)"));
        assert!(m("", "anything"));
    }

    #[test]
    fn quantifiers_backtrack() {
        assert!(m("a.*b", "xx a 123 b yy"));
        assert!(m("^a.*b$", "a b b"));
        assert!(!m("^a.*b$", "a b c"));
        assert!(m("ab+c", "abbbc"));
        assert!(!m("ab+c", "ac"));
        assert!(m("colou?r", "color"));
        assert!(m("colou?r", "colour"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(m(r"exit status \d+", "ringbolt: exit status 42"));
        assert!(!m(r"exit status \d+", "ringbolt: exit status x"));
        assert!(m("[a-c]+x", "zzbcax"));
        assert!(m("v[0-9.]+-", "v4.17.1-"));
        assert!(m("[^ ]+=on", "flag=on"));
        assert!(!m("^[^ ]+=on", " =on"));
        assert!(m(r"\(d0\)", "(XEN) (d0) hi"));
        assert!(m(r"[\w-]+: ok", "xen-pv: ok"));
        assert!(m("[a-]", "-"));
        assert!(m("[]x]", "]"));
    }

    #[test]
    fn rejects_unsupported_and_malformed_patterns() {
        for bad in ["(a|b)", "a|b", "x{2}", "*x", "[abc", "x\\", "+"] {
            assert!(Pattern::parse(bad).is_err(), "{bad} must be refused");
        }
    }
}
