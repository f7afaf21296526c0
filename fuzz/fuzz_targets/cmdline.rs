//! `Cmdline` over arbitrary UTF-8: never panics, borrows only from its input, and agrees with a
//! plain whitespace split wherever there are no quotes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbolt_boot::Cmdline;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        check(text);
    }
});

fn check(text: &str) {
    let cmdline = Cmdline::new(text);
    let span = text.as_ptr() as usize..text.as_ptr() as usize + text.len();
    let within = |s: &str| {
        let start = s.as_ptr() as usize;
        start >= span.start && start + s.len() <= span.end
    };

    let mut previous_end = span.start;
    for arg in cmdline.args() {
        assert!(
            within(arg.key),
            "key {:?} not borrowed from the input",
            arg.key
        );
        assert!(!arg.key.contains('='), "key {:?} holds '='", arg.key);
        assert!(
            arg.key.as_ptr() as usize >= previous_end,
            "arguments out of order"
        );
        previous_end = arg.key.as_ptr() as usize + arg.key.len();
        if let Some(value) = arg.value {
            assert!(within(value), "value {value:?} not borrowed from the input");
            assert!(
                value.as_ptr() as usize > previous_end,
                "value not after its key and '='"
            );
            previous_end = value.as_ptr() as usize + value.len();
        }

        let last_value = cmdline
            .args()
            .filter(|a| a.key == arg.key)
            .filter_map(|a| a.value)
            .last();
        assert_eq!(cmdline.get(arg.key), last_value);
        let _ = cmdline.flag(arg.key);
        let _ = cmdline.parse::<u64>(arg.key);
    }

    if !text.contains('"') {
        let expected = text
            .split_ascii_whitespace()
            .map(|token| match token.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (token, None),
            });
        assert!(
            cmdline.args().map(|arg| (arg.key, arg.value)).eq(expected),
            "unquoted line split differently from split_ascii_whitespace: {text:?}"
        );
    }
}
