//! The statement classifier on arbitrary bytes, under each lexing mode. Every COM_QUERY a
//! client sends passes through it before any backend sees the statement.

#![no_main]

use lagless_proxy::route::{SqlMode, classify, classify_with};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let default = classify(data);
    assert_eq!(default, classify_with(data, SqlMode::default()));
    for (no_backslash_escapes, ansi_quotes) in [(true, false), (false, true), (true, true)] {
        let mode = SqlMode {
            no_backslash_escapes,
            ansi_quotes,
        };
        let _ = classify_with(data, mode);
    }
});
