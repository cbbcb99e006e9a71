//! Escaping, sanitising and truncation shared by the line formats (CEF, LEEF) and the hand-written
//! JSON of the Splunk envelope.
//!
//! Every writer appends to the output buffer directly and copies runs of plain bytes in one go, so
//! a value without special characters costs one `extend_from_slice`. Limits are in bytes and are
//! applied to the value *before* escaping, cutting on a UTF-8 character boundary; an escape
//! sequence is therefore never cut in half. The rules themselves are described in
//! `docs/siem/cef.md` and `docs/siem/leef.md`.

/// The longest prefix of `text` that is at most `max_bytes` long and ends on a character boundary.
pub fn truncate_utf8(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    // A UTF-8 character is at most 4 bytes, so this loop runs at most 3 times.
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Index of the first byte of `bytes` for which `special` holds.
///
/// `special` must be a branch-free test (comparisons joined with `|`): whole 16-byte chunks are
/// tested with a fold the compiler turns into SIMD compares, and only a chunk that has a hit is
/// searched byte by byte. Most values have no special byte at all and cost one pass of wide
/// compares.
#[inline(always)]
fn find_special(bytes: &[u8], special: impl Fn(u8) -> bool + Copy) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(16);
    let mut offset = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |hit, &b| hit | special(b)) {
            return chunk.iter().position(|&b| special(b)).map(|at| offset + at);
        }
        offset += 16;
    }
    chunks.remainder().iter().position(|&b| special(b)).map(|at| offset + at)
}

/// Appends `text` to `out`, replacing each byte for which `special` holds by `replace(byte)`;
/// runs of untouched bytes are copied at once. Only ASCII bytes may be special, so the result
/// stays valid UTF-8.
#[inline(always)]
fn write_mapped(out: &mut Vec<u8>, text: &str, special: impl Fn(u8) -> bool + Copy, replace: impl Fn(u8) -> &'static [u8]) {
    let mut rest = text.as_bytes();
    while let Some(at) = find_special(rest, special) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(replace(rest[at]));
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// Appends a CEF header field: `\` → `\\`, `|` → `\|`, CR and LF → one space each; `=` and
/// everything else unchanged.
pub fn cef_header(out: &mut Vec<u8>, text: &str) {
    write_mapped(
        out,
        text,
        |b| (b == b'\\') | (b == b'|') | (b == b'\r') | (b == b'\n'),
        |b| match b {
            b'\\' => b"\\\\",
            b'|' => b"\\|",
            _ => b" ",
        },
    );
}

/// Appends a CEF extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r` (two characters
/// each); `|` and everything else unchanged.
pub fn cef_extension(out: &mut Vec<u8>, text: &str) {
    write_mapped(
        out,
        text,
        |b| (b == b'\\') | (b == b'=') | (b == b'\n') | (b == b'\r'),
        |b| match b {
            b'\\' => b"\\\\",
            b'=' => b"\\=",
            b'\n' => b"\\n",
            _ => b"\\r",
        },
    );
}

/// Appends a LEEF attribute value. LEEF has no escaping, so TAB (the attribute delimiter), CR and
/// LF each become one space; `|`, `=`, `\` and everything else stay as they are.
pub fn leef_value(out: &mut Vec<u8>, text: &str) {
    write_mapped(out, text, |b| (b == b'\t') | (b == b'\r') | (b == b'\n'), |_| b" ");
}

/// Appends a LEEF header field (vendor, product, version), which can be neither escaped nor
/// contain `|`: `|` and ASCII control characters become `_`. Configuration validation rejects such
/// values; this keeps an encoder built without validation safe.
pub fn leef_header(out: &mut Vec<u8>, text: &str) {
    write_mapped(out, text, |b| (b == b'|') | (b < 0x20) | (b == 0x7f), |_| b"_");
}

/// Whether `c` may appear in a LEEF EventID (`[A-Za-z0-9._:-]`).
pub fn is_leef_event_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// Appends a LEEF EventID: every character outside `[A-Za-z0-9._:-]` becomes one `_`.
pub fn leef_event_id(out: &mut Vec<u8>, text: &str) {
    if text.chars().all(is_leef_event_id_char) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.extend(text.chars().map(|c| if is_leef_event_id_char(c) { c as u8 } else { b'_' }));
}

/// Appends `text` as a JSON string literal (quotes included), with serde_json's escaping: `"`,
/// `\` and every control character U+0000–U+001F are escaped.
#[inline]
pub fn json_string(out: &mut Vec<u8>, text: &str) {
    crate::json_out::string(out, text);
}

/// Writes the concatenation of `parts`, truncated as a whole to `max_bytes` on a character
/// boundary, through `escape`, without building the concatenated string.
///
/// Cutting the first part that does not fit on its own character boundary, and writing nothing
/// after it, gives exactly the prefix that truncating the concatenation would give.
pub fn write_parts(out: &mut Vec<u8>, parts: &[&str], max_bytes: usize, escape: fn(&mut Vec<u8>, &str)) {
    let mut left = max_bytes;
    for part in parts {
        if part.len() <= left {
            escape(out, part);
            left -= part.len();
        } else {
            escape(out, truncate_utf8(part, left));
            return;
        }
    }
}

/// Splits `word` into its first character in upper case (in `buf`) and the rest, for names like
/// `Deploy allowed` and `/Runtime/Deploy`. An empty word gives two empty strings.
pub fn capitalized<'a, 'b>(word: &'a str, buf: &'b mut [u8; 16]) -> (&'b str, &'a str) {
    let mut chars = word.chars();
    let Some(first) = chars.next() else { return ("", "") };
    let mut len = 0;
    // `to_uppercase` yields at most three characters of at most four bytes each.
    for upper in first.to_uppercase() {
        len += upper.encode_utf8(&mut buf[len..]).len();
    }
    let head = std::str::from_utf8(&buf[..len]).expect("encode_utf8 writes UTF-8");
    (head, chars.as_str())
}

/// Appends an `i64` in decimal.
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

/// Appends epoch milliseconds as epoch seconds with exactly three decimals (`1773480413.120`),
/// computed from integers so no binary floating-point rounding can shift the instant.
pub fn write_epoch_seconds(out: &mut Vec<u8>, epoch_ms: i64) {
    let abs = epoch_ms.unsigned_abs();
    if epoch_ms < 0 {
        out.push(b'-');
    }
    write_i64(out, (abs / 1000) as i64);
    let ms = (abs % 1000) as u16;
    out.extend_from_slice(&[b'.', b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8]);
}

/// A key for an extra input field in the line formats: `prefix` followed by the field name with
/// everything but ASCII letters and digits removed and its first letter in upper case
/// (`ticket_id` → `<prefix>Ticketid`). `None` when nothing of the name is left.
pub fn custom_key(prefix: &str, name: &str) -> Option<String> {
    let mut key = String::with_capacity(prefix.len() + name.len());
    key.push_str(prefix);
    for c in name.chars().filter(char::is_ascii_alphanumeric) {
        if key.len() == prefix.len() {
            key.push(c.to_ascii_uppercase());
        } else {
            key.push(c);
        }
    }
    (key.len() > prefix.len()).then_some(key)
}

/// The text of an extra field's value in a line format: strings as they are, anything else as
/// compact JSON.
pub fn extra_value_text(value: &serde_json::Value) -> std::borrow::Cow<'_, str> {
    match value {
        serde_json::Value::String(text) => std::borrow::Cow::Borrowed(text),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(f: fn(&mut Vec<u8>, &str), text: &str) -> String {
        let mut out = Vec::new();
        f(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    /// Format notes §9 item 1: one input, four encodings.
    const NOTES_INPUT: &str = "a|b=c\\d\ne";

    #[test]
    fn cef_header_escapes_backslash_and_pipe_and_blanks_line_breaks() {
        assert_eq!(run(cef_header, NOTES_INPUT), "a\\|b=c\\\\d e");
        assert_eq!(run(cef_header, "x\r\ny"), "x  y");
        assert_eq!(run(cef_header, "plain text"), "plain text");
        assert_eq!(run(cef_header, "\\|"), "\\\\\\|");
    }

    #[test]
    fn cef_extension_escapes_backslash_equals_and_line_breaks_but_not_pipes() {
        assert_eq!(run(cef_extension, NOTES_INPUT), "a|b\\=c\\\\d\\ne");
        assert_eq!(run(cef_extension, "\r\n"), "\\r\\n");
        assert_eq!(run(cef_extension, "k=v \\=x"), "k\\=v \\\\\\=x");
        assert_eq!(run(cef_extension, "tab\tstays"), "tab\tstays");
    }

    #[test]
    fn leef_value_blanks_tab_and_line_breaks_and_nothing_else() {
        assert_eq!(run(leef_value, NOTES_INPUT), "a|b=c\\d e");
        assert_eq!(run(leef_value, "a\tb\r\nc"), "a b  c");
        assert_eq!(run(leef_value, "é=ü|^"), "é=ü|^");
    }

    #[test]
    fn leef_header_replaces_pipes_and_controls() {
        assert_eq!(run(leef_header, "Ac|me\u{7f}\t"), "Ac_me__");
        assert_eq!(run(leef_header, "Acme Ünï"), "Acme Ünï");
    }

    #[test]
    fn leef_event_id_keeps_only_its_charset() {
        assert_eq!(run(leef_event_id, "deploy"), "deploy");
        assert_eq!(run(leef_event_id, "a.b_c:d-9"), "a.b_c:d-9");
        assert_eq!(run(leef_event_id, "dé|p\tx y"), "d__p_x_y");
    }

    #[test]
    fn json_string_escapes_quotes_backslashes_and_controls() {
        assert_eq!(run(json_string, NOTES_INPUT), "\"a|b=c\\\\d\\ne\"");
        assert_eq!(run(json_string, "\"\u{0}\t"), "\"\\\"\\u0000\\t\"");
    }

    #[test]
    fn truncate_utf8_cuts_on_character_boundaries() {
        assert_eq!(truncate_utf8("abc", 5), "abc");
        assert_eq!(truncate_utf8("abc", 2), "ab");
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("a€", 3), "a");
        assert_eq!(truncate_utf8("a€", 4), "a€");
        assert_eq!(truncate_utf8("😀", 3), "");
        assert_eq!(truncate_utf8("", 0), "");
    }

    #[test]
    fn write_parts_truncates_the_concatenation() {
        let mut out = Vec::new();
        write_parts(&mut out, &["ab", "é", "c"], 3, cef_extension);
        assert_eq!(out, "ab".as_bytes(), "a cut character must not let a later part in");
        out.clear();
        write_parts(&mut out, &["a=", "b"], 10, cef_extension);
        assert_eq!(out, b"a\\=b");
    }

    #[test]
    fn capitalized_uppercases_the_first_character() {
        let mut buf = [0; 16];
        assert_eq!(capitalized("deploy", &mut buf), ("D", "eploy"));
        assert_eq!(capitalized("ßx", &mut buf), ("SS", "x"));
        assert_eq!(capitalized("", &mut buf), ("", ""));
        assert_eq!(capitalized("ǆ", &mut buf), ("Ǆ", ""));
    }

    #[test]
    fn integers_and_epoch_seconds_print_exactly() {
        let show = |f: fn(&mut Vec<u8>, i64), v: i64| {
            let mut out = Vec::new();
            f(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(show(write_i64, 0), "0");
        assert_eq!(show(write_i64, 1773480413120), "1773480413120");
        assert_eq!(show(write_i64, i64::MIN), i64::MIN.to_string());
        assert_eq!(show(write_epoch_seconds, 1773480413120), "1773480413.120");
        assert_eq!(show(write_epoch_seconds, 1773480425007), "1773480425.007");
        assert_eq!(show(write_epoch_seconds, 0), "0.000");
        assert_eq!(show(write_epoch_seconds, -1), "-0.001");
        assert_eq!(show(write_epoch_seconds, -1500), "-1.500");
        assert_eq!(show(write_epoch_seconds, i64::MIN), "-9223372036854775.808");
    }

    #[test]
    fn custom_keys_are_alphanumeric() {
        assert_eq!(custom_key("AcmeRuntimeGuard", "ticket").as_deref(), Some("AcmeRuntimeGuardTicket"));
        assert_eq!(custom_key("x", "src_ip").as_deref(), Some("xSrcip"));
        assert_eq!(custom_key("x", "é-_"), None);
    }

    proptest! {
        #[test]
        fn truncation_is_the_longest_valid_prefix(text in any::<String>(), max in 0usize..64) {
            let cut = truncate_utf8(&text, max);
            prop_assert!(cut.len() <= max);
            prop_assert!(text.starts_with(cut));
            // The next character would not have fitted.
            if let Some(next) = text[cut.len()..].chars().next() {
                prop_assert!(cut.len() + next.len_utf8() > max);
            }
        }

        #[test]
        fn write_parts_equals_truncating_the_joined_string(
            parts in proptest::collection::vec(any::<String>(), 0..5),
            max in 0usize..40,
        ) {
            let joined = parts.concat();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let mut out = Vec::new();
            write_parts(&mut out, &refs, max, leef_value);
            let mut expected = Vec::new();
            leef_value(&mut expected, truncate_utf8(&joined, max));
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn escaped_values_have_no_line_breaks(text in any::<String>()) {
            for f in [cef_header, cef_extension, leef_value, leef_header, leef_event_id, json_string] {
                let out = run(f, &text);
                prop_assert!(!out.contains('\n') && !out.contains('\r'), "{:?}", out);
            }
            prop_assert!(!run(leef_value, &text).contains('\t'));
            prop_assert!(!run(leef_header, &text).contains('|'));
            prop_assert!(run(leef_event_id, &text).chars().all(is_leef_event_id_char));
        }

        /// The chunked writers equal a plain character-by-character mapping, whatever the
        /// position of the special bytes relative to the 16-byte chunks.
        #[test]
        fn writers_equal_a_character_by_character_mapping(text in crate::siem::test_support::hostile_string()) {
            let naive = |map: fn(char) -> Option<&'static str>| -> String {
                text.chars().map(|c| map(c).map_or_else(|| c.to_string(), str::to_owned)).collect()
            };
            prop_assert_eq!(run(cef_header, &text), naive(|c| match c {
                '\\' => Some("\\\\"), '|' => Some("\\|"), '\r' | '\n' => Some(" "), _ => None,
            }));
            prop_assert_eq!(run(cef_extension, &text), naive(|c| match c {
                '\\' => Some("\\\\"), '=' => Some("\\="), '\n' => Some("\\n"), '\r' => Some("\\r"), _ => None,
            }));
            prop_assert_eq!(run(leef_value, &text), naive(|c| match c { '\t' | '\r' | '\n' => Some(" "), _ => None }));
            prop_assert_eq!(run(leef_header, &text), naive(|c| match c {
                '|' | '\u{0}'..='\u{1f}' | '\u{7f}' => Some("_"), _ => None,
            }));
        }

        #[test]
        fn epoch_seconds_are_the_milliseconds_divided_by_1000(ms in any::<i64>()) {
            let mut out = Vec::new();
            write_epoch_seconds(&mut out, ms);
            let text = String::from_utf8(out).unwrap();
            let digits: String = text.chars().filter(|c| *c != '.').collect();
            prop_assert_eq!(digits.parse::<i128>().unwrap(), ms as i128, "{}", text);
            prop_assert_eq!(text.len() - text.find('.').unwrap(), 4);
        }
    }
}
