//! Writing output records as JSON.
//!
//! Two ways in, both producing the bytes `serde_json`'s compact serializer produces (same
//! escaping: `"`, `\\` and U+0000–U+001F, with `\b \f \n \r \t` short forms and lowercase
//! `\u00xx` otherwise; the same number formatting):
//!
//! - [`object`] writes a document field by field with an [`Object`] writer: keys are our own
//!   constants and go out as they are, string values go through [`string`] (or [`escape_into`]
//!   for values written in pieces). The SIEM encoders, trace summaries and rule hits use it; it
//!   is about twice as fast as driving a serde serializer, which escapes every key and
//!   dispatches per field (`docs/benchmarks-history.md`).
//! - [`write()`] serializes any `Serialize` value with `sonic-rs` (whose serde serializer writes
//!   the same bytes as `serde_json`'s, with SIMD string scanning): records built less often
//!   (deny alerts, late events, enriched JSON), single strings, and arbitrary JSON values
//!   (extra input fields).
//!
//! The golden tests pin the bytes of every format, and property tests check [`string`] against
//! `serde_json` and read every format back with `serde_json`.

use serde::Serialize;
use serde_json::{Map, Value};

/// Appends `value` as compact JSON to `out`. Borrowed strings, numbers and `serde_json` values
/// cannot fail to serialize into a `Vec`, so an error here is a bug.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    sonic_rs::to_writer(out, value).expect("output record serializes");
}

/// Appends `text` as a JSON string literal, quotes included. This goes through `sonic-rs`,
/// whose SIMD string writer beats a word-at-a-time scan on our short strings (`benches/`).
#[inline]
pub fn string(out: &mut Vec<u8>, text: &str) {
    write(out, text);
}

/// Appends the JSON escaping of `text` (no quotes): the inside of a string literal, for values
/// written in pieces ([`Object::str_parts`]).
#[inline]
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        escape_slow(out, text.as_bytes());
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Appends the concatenation of `parts` as one JSON string literal, quotes included, without
/// building the concatenation.
pub fn string_of_parts(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for part in parts {
        escape_into(out, part);
    }
    out.push(b'"');
}

#[cold]
fn escape_slow(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0C => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1F => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..at]);
        start = at + 1;
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xF)]]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any byte of `bytes` is `"`, `\` or below U+0020.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    crate::scan::any_below_or_eq(bytes, 0x20, b'"', b'\\')
}

/// Appends `bytes` between quotes as they are, for text known to need no escaping (format
/// constants, UUIDs, timestamps this crate formats); debug builds check it.
#[inline]
pub(crate) fn quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(!needs_escape(bytes), "{:?} needs escaping", String::from_utf8_lossy(bytes));
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

/// Appends `value` hyphenated and lowercase between quotes: nothing in it needs escaping.
#[inline]
fn uuid_string(out: &mut Vec<u8>, value: &uuid::Uuid) {
    quoted(out, value.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).as_bytes());
}

/// A string rendered once as a JSON string literal (quotes and escaping included), for values
/// fixed when an encoder is built: configured names, product fields, attribute keys. Writing it
/// is a copy, with no scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal(Box<[u8]>);

impl Literal {
    /// The literal of `text`, escaped by [`string`].
    pub fn new(text: &str) -> Self {
        let mut json = Vec::with_capacity(text.len() + 2);
        string(&mut json, text);
        Literal(json.into_boxed_slice())
    }

    /// The literal's JSON bytes, quotes included.
    pub fn json(&self) -> &[u8] {
        &self.0
    }
}

/// Appends a `&'static str` constant of an output format as a JSON string literal. Constants
/// need no escaping (debug builds check it), so they go out as they are.
#[inline]
fn constant(out: &mut Vec<u8>, value: &'static str) {
    quoted(out, value.as_bytes());
}

/// Writes one JSON object into `out`: `fill` adds the fields, the braces are written around them.
pub fn object(out: &mut Vec<u8>, fill: impl FnOnce(&mut Object<'_>)) {
    let mut doc = Object { out, empty: true };
    doc.out.push(b'{');
    fill(&mut doc);
    doc.out.push(b'}');
}

/// A JSON object being written, field by field, in the order the calls are made.
///
/// Keys are `&'static str` constants of the output format: they are written without escaping
/// (debug builds check they need none). Dynamic keys (extra input fields) go through
/// [`Object::map`], which escapes them.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl Object<'_> {
    #[inline]
    fn key(&mut self, key: &'static str) {
        debug_assert!(!needs_escape(key.as_bytes()), "constant key {key:?} needs escaping");
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// `"key":"value"`, escaped.
    #[inline]
    pub fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    /// `"key":"<uuid, hyphenated, lowercase>"`, written without a scan (hex digits and hyphens).
    #[inline]
    pub fn uuid(&mut self, key: &'static str, value: &uuid::Uuid) {
        self.key(key);
        uuid_string(self.out, value);
    }

    /// `"key":"value"` for a format's constant value (a `&'static str` that needs no escaping,
    /// checked in debug builds), written without a scan.
    #[inline]
    pub fn lit(&mut self, key: &'static str, value: &'static str) {
        self.key(key);
        constant(self.out, value);
    }

    /// `"key":"value"` for a value rendered at build time.
    #[inline]
    pub fn literal(&mut self, key: &'static str, value: &Literal) {
        self.json(key, value.json());
    }

    /// `"key":["a","b",...]` of constants (see [`Object::lit`]).
    pub fn lit_array(&mut self, key: &'static str, items: impl IntoIterator<Item = &'static str>) {
        self.items(key, items, constant);
    }

    /// `"key":[...]`, each item written by `write`.
    fn items<T>(&mut self, key: &'static str, items: impl IntoIterator<Item = T>, write: impl Fn(&mut Vec<u8>, T)) {
        self.key(key);
        self.out.push(b'[');
        for (index, item) in items.into_iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            write(self.out, item);
        }
        self.out.push(b']');
    }

    /// `"key":"value"` when `value` is `Some`; nothing otherwise.
    #[inline]
    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    /// `"key":"<the parts concatenated>"`, without building the concatenation.
    #[inline]
    pub fn str_parts(&mut self, key: &'static str, parts: &[&str]) {
        self.key(key);
        string_of_parts(self.out, parts);
    }

    /// `"key":<number>`.
    #[inline]
    pub fn int(&mut self, key: &'static str, value: i64) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// `"key":true` or `"key":false`.
    #[inline]
    pub fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// `"key":["a","b",...]`.
    pub fn str_array<'s>(&mut self, key: &'static str, items: impl IntoIterator<Item = &'s str>) {
        self.items(key, items, string);
    }

    /// `"key":{...}`, the nested object's fields added by `fill`.
    pub fn object(&mut self, key: &'static str, fill: impl FnOnce(&mut Object<'_>)) {
        self.key(key);
        object(self.out, fill);
    }

    /// `"key":[{...}]`: an array holding one object, its fields added by `fill`.
    pub fn object_array_of_one(&mut self, key: &'static str, fill: impl FnOnce(&mut Object<'_>)) {
        self.key(key);
        self.out.push(b'[');
        object(self.out, fill);
        self.out.push(b']');
    }

    /// `"key":[...]`, the elements added by `fill`.
    pub fn array(&mut self, key: &'static str, fill: impl FnOnce(&mut Array<'_>)) {
        self.key(key);
        let mut list = Array { out: self.out, empty: true };
        list.out.push(b'[');
        fill(&mut list);
        list.out.push(b']');
    }

    /// `"key":<value>` for any JSON value.
    pub fn value(&mut self, key: &'static str, value: &Value) {
        self.key(key);
        write(self.out, value);
    }

    /// `"key":<any serde value>`, through [`write()`].
    pub fn serialize<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        self.key(key);
        write(self.out, value);
    }

    /// `"key":<json>`, where `json` is one complete JSON value, e.g. a string literal rendered
    /// once for several records ([`crate::siem::Shared`]).
    #[inline]
    pub fn json(&mut self, key: &'static str, json: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(json);
    }

    /// `"key":<whatever fill appends>`: `fill` writes one complete JSON value into the buffer.
    /// For values that must be measured or rewritten after writing.
    pub fn raw(&mut self, key: &'static str, fill: impl FnOnce(&mut Vec<u8>)) {
        self.key(key);
        fill(self.out);
    }

    /// `"key":{"k1":v1,...}`: a map of dynamic keys (escaped) to JSON values, in its order.
    pub fn map(&mut self, key: &'static str, map: &Map<String, Value>) {
        self.object(key, |o| {
            for (name, value) in map {
                o.value_at(&[name], value);
            }
        });
    }

    /// `"<parts concatenated>":<value>`: a field whose key is built from dynamic parts
    /// (escaped), e.g. `extra.<name>`.
    pub fn value_at(&mut self, key_parts: &[&str], value: &Value) {
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        for part in key_parts {
            escape_into(self.out, part);
        }
        self.out.extend_from_slice(b"\":");
        match value {
            Value::String(text) => string(self.out, text),
            other => write(self.out, other),
        }
    }
}

/// A JSON array being written, element by element.
pub struct Array<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl Array<'_> {
    #[inline]
    fn separate(&mut self) {
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
    }

    /// An object element, its fields added by `fill`.
    pub fn object(&mut self, fill: impl FnOnce(&mut Object<'_>)) {
        self.separate();
        object(self.out, fill);
    }

    /// A string element.
    pub fn str(&mut self, value: &str) {
        self.separate();
        string(self.out, value);
    }

    /// A UUID element, hyphenated and lowercase (see [`Object::uuid`]).
    pub fn uuid(&mut self, value: &uuid::Uuid) {
        self.separate();
        uuid_string(self.out, value);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_like_serde_json_at_every_position_of_a_word() {
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{8}', '\u{c}', '\t', '\r'] {
            for at in 0..17 {
                let text: String = (0..17).map(|i| if i == at { special } else { 'a' }).collect();
                let mut out = Vec::new();
                string(&mut out, &text);
                assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&text).unwrap(), "{special:?} at {at}");
                let mut out = b"\"".to_vec();
                escape_into(&mut out, &text);
                out.push(b'"');
                assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&text).unwrap(), "{special:?} at {at}");
            }
        }
    }

    #[test]
    fn objects_nest_and_separate_fields() {
        let mut extra = Map::new();
        extra.insert("n\"1".into(), Value::from(1.5));
        extra.insert("s".into(), Value::from("x\u{7f}é"));
        let mut out = Vec::new();
        object(&mut out, |doc| {
            doc.str("a", "1");
            doc.opt_str("skipped", None);
            doc.object("b", |o| {
                o.int("n", -3);
                o.bool("t", true);
                o.str_array("l", ["x", "y\n"]);
            });
            doc.object("empty", |_| {});
            doc.object_array_of_one("one", |o| o.int("u", 7));
            doc.array("list", |l| {
                l.str("s");
                l.object(|o| o.str("k", "v"));
            });
            doc.array("none", |_| {});
            doc.str_parts("m", &["p", "\"q\""]);
            doc.map("extra", &extra);
            doc.value("v", &serde_json::json!([null, {"k": false}]));
            doc.lit("c", "const");
            doc.literal("r", &Literal::new("q\"\u{1}é"));
            doc.lit_array("la", ["x", "y"]);
            doc.uuid("u", &uuid::Uuid::from_u128(0xCEC2C36B_1A68_5E27_9009_9862FBE0FE52));
            doc.array("us", |l| l.uuid(&uuid::Uuid::nil()));
        });
        let expected = serde_json::json!({
            "a": "1", "b": {"n": -3, "t": true, "l": ["x", "y\n"]}, "empty": {}, "one": [{"u": 7}], "list": ["s", {"k": "v"}], "none": [], "m": "p\"q\"",
            "extra": {"n\"1": 1.5, "s": "x\u{7f}é"}, "v": [null, {"k": false}], "c": "const", "r": "q\"\u{1}é", "la": ["x", "y"],
            "u": "cec2c36b-1a68-5e27-9009-9862fbe0fe52",
            "us": ["00000000-0000-0000-0000-000000000000"]
        });
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&expected).unwrap());
    }

    proptest! {
        /// Any string, including control characters, quotes, backslashes and non-ASCII, is
        /// written exactly as serde_json writes it.
        #[test]
        fn string_matches_serde_json(text in "(?s).{0,40}|[\"\\\\\\x00-\\x1f a-z]{0,40}") {
            let expected = serde_json::to_string(&text).unwrap();
            let mut out = Vec::new();
            string(&mut out, &text);
            prop_assert_eq!(String::from_utf8(out).unwrap(), expected.clone());
            let mut inner = b"\"".to_vec();
            escape_into(&mut inner, &text);
            inner.push(b'"');
            prop_assert_eq!(String::from_utf8(inner).unwrap(), expected);
        }
    }
}
