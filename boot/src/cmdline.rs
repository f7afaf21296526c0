//! The kernel command line: `key=value`, bare `key` and `key="quoted value"` arguments.
//!
//! Tokenizing follows Linux's `next_arg` (`lib/cmdline.c`, used by `kernel/params.c`) so that
//! command lines written for Linux guests mean the same here:
//!
//! - Arguments are separated by ASCII whitespace outside double quotes.
//! - The key runs to the first `=`; everything after it is the value (which may contain `=`).
//! - A value starting with `"` loses that quote and, if the argument ends with `"`, that one
//!   too: `msg="hello world"` is `msg` = `hello world`. A whole argument in quotes,
//!   `"msg=hello world"`, is the same. Quotes elsewhere are kept as written.
//! - An unterminated quote runs to the end of the line: `a="b c` is `a` = `b c`.
//!
//! Everything borrows from the original string: there is no heap at boot.

use core::str::FromStr;

/// One argument: `key` alone (`value` is `None`) or `key=value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg<'a> {
    pub key: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Arg<'a> {
    /// Splits one whitespace-delimited token (quotes included) into key and value.
    fn from_token(token: &'a str) -> Self {
        let (token, whole_quoted) = match token.strip_prefix('"') {
            Some(inner) => (inner, true),
            None => (token, false),
        };
        let Some((key, value)) = token.split_once('=') else {
            let key = if whole_quoted {
                strip_closing_quote(token)
            } else {
                token
            };
            return Arg { key, value: None };
        };
        let value = match value.strip_prefix('"') {
            Some(inner) => strip_closing_quote(inner),
            None if whole_quoted => strip_closing_quote(value),
            None => value,
        };
        Arg {
            key,
            value: Some(value),
        }
    }
}

fn strip_closing_quote(s: &str) -> &str {
    s.strip_suffix('"').unwrap_or(s)
}

/// A parsed view of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    pub const fn new(text: &'a str) -> Self {
        Cmdline { text }
    }

    /// The command line as given.
    pub const fn as_str(&self) -> &'a str {
        self.text
    }

    /// The arguments, in order.
    pub fn args(&self) -> Args<'a> {
        Args { rest: self.text }
    }

    /// The value of the last `key=value` argument; bare `key` arguments have no value and are
    /// ignored here (see [`flag`](Self::flag)). Later arguments override earlier ones, so a
    /// loader can append defaults the user overrides, or the other way round.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.args()
            .filter(|arg| arg.key == key)
            .filter_map(|arg| arg.value)
            .last()
    }

    /// Whether the last `key` argument turns the flag on: bare `key`, `key=1`, `key=true` or
    /// `key=on`. Any other value is off, so a misspelt value cannot enable a feature.
    pub fn flag(&self, key: &str) -> bool {
        self.args()
            .filter(|arg| arg.key == key)
            .last()
            .is_some_and(|arg| matches!(arg.value, None | Some("1" | "true" | "on")))
    }

    /// [`get`](Self::get), then `T::from_str`: `None` if the key has no value.
    pub fn parse<T: FromStr>(&self, key: &str) -> Option<Result<T, T::Err>> {
        self.get(key).map(str::parse)
    }
}

/// Iterator over [`Cmdline::args`].
#[derive(Clone, Debug)]
pub struct Args<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Args<'a> {
    type Item = Arg<'a>;

    fn next(&mut self) -> Option<Arg<'a>> {
        let text = self
            .rest
            .trim_start_matches(|c: char| c.is_ascii_whitespace());
        if text.is_empty() {
            self.rest = text;
            return None;
        }
        let mut quoted = false;
        let end = text
            .bytes()
            .position(|b| {
                if b == b'"' {
                    quoted = !quoted;
                }
                !quoted && b.is_ascii_whitespace()
            })
            .unwrap_or(text.len());
        // `end` is at an ASCII byte or the end, so both halves are valid UTF-8.
        let (token, rest) = text.split_at(end);
        self.rest = rest;
        Some(Arg::from_token(token))
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;

    fn args(text: &str) -> Vec<(&str, Option<&str>)> {
        Cmdline::new(text)
            .args()
            .map(|arg| (arg.key, arg.value))
            .collect()
    }

    #[test]
    fn splits_keys_values_and_bare_keys_on_any_whitespace() {
        assert_eq!(
            args("  console=hvc0\tquiet\nlog=debug \r\n"),
            [
                ("console", Some("hvc0")),
                ("quiet", None),
                ("log", Some("debug"))
            ]
        );
    }

    #[test]
    fn empty_and_blank_lines_have_no_arguments() {
        assert_eq!(args(""), []);
        assert_eq!(args(" \t\n"), []);
    }

    #[test]
    fn value_runs_past_later_equals_signs() {
        assert_eq!(
            args("root=UUID=1234 a="),
            [("root", Some("UUID=1234")), ("a", Some(""))]
        );
    }

    #[test]
    fn quoted_value_keeps_its_spaces_and_loses_its_quotes() {
        assert_eq!(
            args(r#"msg="hello world" next=1"#),
            [("msg", Some("hello world")), ("next", Some("1"))]
        );
        assert_eq!(args(r#"empty="""#), [("empty", Some(""))]);
    }

    #[test]
    fn whole_argument_in_quotes_is_unquoted() {
        assert_eq!(
            args(r#""msg=hello world" "bare key""#),
            [("msg", Some("hello world")), ("bare key", None)]
        );
    }

    #[test]
    fn quotes_inside_a_value_are_kept() {
        assert_eq!(
            args(r#"a=x"y z"w b"#),
            [("a", Some(r#"x"y z"w"#)), ("b", None)]
        );
    }

    #[test]
    fn unterminated_quote_takes_the_rest_of_the_line() {
        assert_eq!(
            args(r#"a=1 msg="hello world  b=2"#),
            [("a", Some("1")), ("msg", Some("hello world  b=2"))]
        );
        assert_eq!(args(r#"x=""#), [("x", Some(""))]);
        assert_eq!(args(r#"""#), [("", None)]);
    }

    #[test]
    fn splits_between_multibyte_characters() {
        assert_eq!(
            args("name=zoë\u{a0}x ü"),
            [("name", Some("zoë\u{a0}x")), ("ü", None)]
        );
    }

    #[test]
    fn get_returns_the_last_value() {
        let cmdline = Cmdline::new("log=info a=1 log=debug");
        assert_eq!(cmdline.get("log"), Some("debug"));
        assert_eq!(cmdline.get("a"), Some("1"));
        assert_eq!(cmdline.get("missing"), None);
    }

    #[test]
    fn get_ignores_bare_occurrences() {
        let cmdline = Cmdline::new("log=info log");
        assert_eq!(cmdline.get("log"), Some("info"));
        assert_eq!(Cmdline::new("quiet").get("quiet"), None);
    }

    #[test]
    fn get_matches_whole_keys_only() {
        let cmdline = Cmdline::new("loglevel=7");
        assert_eq!(cmdline.get("log"), None);
    }

    #[test]
    fn flag_is_on_for_bare_key_and_true_spellings() {
        for text in [
            "debug",
            "debug=1",
            "debug=true",
            "debug=on",
            "debug=0 debug",
        ] {
            assert!(Cmdline::new(text).flag("debug"), "{text}");
        }
    }

    #[test]
    fn flag_is_off_when_absent_false_or_unrecognised() {
        for text in [
            "",
            "debug=0",
            "debug=false",
            "debug=off",
            "debug=yes",
            "debug debug=off",
            "debugx",
        ] {
            assert!(!Cmdline::new(text).flag("debug"), "{text}");
        }
    }

    #[test]
    fn parse_converts_the_value_and_reports_failures() {
        let cmdline = Cmdline::new("cpus=4 mem=lots quiet");
        assert_eq!(cmdline.parse::<u32>("cpus"), Some(Ok(4)));
        assert!(matches!(cmdline.parse::<u32>("mem"), Some(Err(_))));
        assert_eq!(cmdline.parse::<u32>("quiet"), None);
        assert_eq!(cmdline.parse::<u32>("missing"), None);
    }
}
