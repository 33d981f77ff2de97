//! CEL text: literals, the few idioms the policy is built from, and templates that turn the
//! webhook's own messages, rendered with placeholders, into CEL string expressions.
//!
//! Everything here runs on the CEL of Kubernetes 1.30 (the oldest release with
//! ValidatingAdmissionPolicy GA): `matches`, `find`, the strings extension (`substring`,
//! `replace`, `join`, `indexOf`), `sum()`, and list macros. No `cel.bind`, no two-variable
//! comprehensions, no `flatten()`, no `format` library: each has an equivalent below.

use std::fmt::Write as _;

/// A CEL string literal saying exactly `s`.
pub fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            // Escaped too: the policy stays ASCII, which every YAML tool passes through (Helm's
            // emitter drops a whole document holding a C1 control character).
            c if (c as u32) > 0xffff => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
            c if !c.is_ascii() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL list literal of the strings.
pub fn lit_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| lit(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// `body` with `name` bound to the value of `value`, evaluated once (`cel.bind` arrived after 1.30).
pub fn bind(value: &str, name: &str, body: &str) -> String {
    format!("[{value}].map({name}, {body})[0]")
}

/// `[from, from + 1, ..., to - 1]`: the indexes a comprehension walks when it needs the position
/// of each element (two-variable comprehensions arrived after 1.30). A literal also bounds the
/// walk for the cost estimator.
pub fn range(from: usize, to: usize) -> String {
    let items: Vec<String> = (from..to).map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// The indexes of a list of `size` elements, from the smallest literal that holds them (`tiers`
/// ascending, the last one large enough): a walk costs about the list's length, not the largest
/// tier's.
pub fn indexes(size: &str, tiers: &[usize]) -> String {
    let mut out = String::new();
    for (n, tier) in tiers.iter().enumerate() {
        if n + 1 == tiers.len() {
            out.push_str(&range(0, *tier));
        } else {
            let _ = write!(out, "{size} <= {tier} ? {} : ", range(0, *tier));
        }
    }
    format!("({out})")
}

/// The lists of `lists` (a list of at most `max` lists) joined into one, in order (`flatten()`
/// arrived after 1.30). Balanced, so that the parser's nesting stays shallow.
pub fn flatten(lists: &str, max: usize) -> String {
    fn sum(parts: &[String]) -> String {
        match parts {
            [] => "[]".into(),
            [one] => one.clone(),
            _ => {
                let (a, b) = parts.split_at(parts.len() / 2);
                format!("({} + {})", sum(a), sum(b))
            }
        }
    }
    let parts: Vec<String> = (0..max).map(|k| format!("(size(l) > {k} ? l[{k}] : [])")).collect();
    bind(lists, "l", &sum(&parts))
}

/// The length of the string `x` in bytes, as Rust's `str::len` and Go's `len` count it (CEL's
/// `size` counts code points).
pub fn byte_len(x: &str) -> String {
    format!("size(bytes({x}))")
}

/// The characters Rust's `{:?}` escapes in a string, among the first 256 code points (the ones
/// CEL can afford to replace one by one), with the escape Rust writes. Beyond them, Rust also
/// escapes format and combining characters (e.g. U+202E, U+0301): CEL quotes those as they are.
pub fn debug_escapes() -> Vec<(char, String)> {
    (0u32..0x100)
        .filter_map(char::from_u32)
        .filter_map(|c| {
            let shown = format!("{:?}", c.to_string());
            let inner = &shown[1..shown.len() - 1];
            (inner != c.to_string()).then(|| (c, inner.to_owned()))
        })
        .collect()
}

/// A regular expression class of the characters of [`debug_escapes`].
fn escaped_class() -> String {
    let mut class = String::new();
    let escapes = debug_escapes();
    let mut i = 0;
    while i < escapes.len() {
        let start = escapes[i].0 as u32;
        let mut end = start;
        while i + 1 < escapes.len() && escapes[i + 1].0 as u32 == end + 1 {
            i += 1;
            end += 1;
        }
        match end - start {
            0 => {
                let _ = write!(class, "\\x{{{start:x}}}");
            }
            _ => {
                let _ = write!(class, "\\x{{{start:x}}}-\\x{{{end:x}}}");
            }
        }
        i += 1;
    }
    class
}

/// The string `x` as Rust's `{:?}` shows it: quoted, with the escapes of [`debug_escapes`].
/// Most strings need none, which one regular expression finds out.
pub fn debug(x: &str) -> String {
    let clean = lit(&format!("^[^{}]*$", escaped_class()));
    let mut escaped = x.to_owned();
    // The backslash first, so that the escapes added after it are not escaped again.
    let mut escapes = debug_escapes();
    escapes.sort_by_key(|(c, _)| *c != '\\');
    for (c, shown) in escapes {
        escaped = format!("{escaped}.replace({}, {})", lit(&c.to_string()), lit(&shown));
    }
    format!("({x}.matches({clean}) ? '\"' + {x} + '\"' : '\"' + {escaped} + '\"')")
}

/// The string `x`, which has none of the characters of [`debug_escapes`] (a name already checked
/// to be a label), as Rust's `{:?}` shows it.
pub fn debug_plain(x: &str) -> String {
    format!("('\"' + {x} + '\"')")
}

/// How many characters of a value a message quotes ([`crate::offloading::field::MAX_QUOTED_CHARS`]).
fn max_quoted() -> usize {
    crate::offloading::field::MAX_QUOTED_CHARS
}

/// The value `x` as a field error keeps it: at most 128 characters, then how long it was
/// (`field::clip`).
pub fn clip(x: &str) -> String {
    let n = max_quoted();
    format!(
        "(size({x}) > {n} ? {x}.substring(0, {n}) + '... (' + string(size({x})) + ' characters in all)' : {x})"
    )
}

/// `field::quoted`: the string `x` quoted, cut at 128 characters with a note of its length.
pub fn quoted(x: &str) -> String {
    let n = max_quoted();
    let cut = bind(&format!("{x}.substring(0, {n}) + '...'"), "c", &debug("c"));
    format!(
        "(size({x}) > {n} ? {cut} + ' (truncated: ' + string(size({x})) + ' characters in all)' : {})",
        debug(x)
    )
}

/// A placeholder in a message rendered by the webhook's own code, and the CEL that stands for it.
pub struct Slot {
    /// The text the placeholder left in the message.
    pub shown: String,
    /// A CEL string expression for what stands there.
    pub cel: String,
}

/// Placeholders: characters of a private-use area no message contains. Where a message shows a
/// placeholder with `{:?}`, [`Slot::debug`] stands for it.
pub const MARKS: [&str; 8] =
    ["\u{e000}", "\u{e001}", "\u{e002}", "\u{e003}", "\u{e004}", "\u{e005}", "\u{e006}", "\u{e007}"];

/// Numbers no message contains, for counts and lengths a message shows.
pub const NUMBERS: [usize; 4] = [987_650_001, 987_650_002, 987_650_003, 987_650_004];

impl Slot {
    /// A placeholder shown as it is (`{}`), e.g. a path.
    pub fn raw(mark: &str, cel: impl Into<String>) -> Self {
        Self { shown: mark.to_owned(), cel: cel.into() }
    }

    /// A placeholder shown quoted (`{:?}`), for a value that may need escapes.
    pub fn debug(mark: &str, value: &str) -> Self {
        Self { shown: format!("{mark:?}"), cel: debug(value) }
    }

    /// A placeholder shown quoted (`{:?}`), for a value that needs no escape (a checked name, an
    /// operator of the fixed list).
    pub fn debug_plain(mark: &str, value: &str) -> Self {
        Self { shown: format!("{mark:?}"), cel: debug_plain(value) }
    }

    /// A number shown with `{}`: `cel` is a CEL int expression.
    pub fn number(n: usize, cel: &str) -> Self {
        Self { shown: n.to_string(), cel: format!("string({cel})") }
    }
}

/// The CEL string expression for `rendered`, each placeholder replaced by its slot's CEL.
pub fn template(rendered: &str, slots: &[Slot]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut literal = String::new();
    let mut rest = rendered;
    'scan: while !rest.is_empty() {
        // The longest placeholder first: a quoted one contains the raw one.
        let mut by_len: Vec<&Slot> = slots.iter().collect();
        by_len.sort_by_key(|s| std::cmp::Reverse(s.shown.len()));
        for slot in by_len {
            if let Some(after) = rest.strip_prefix(slot.shown.as_str()) {
                if !literal.is_empty() {
                    parts.push(lit(&std::mem::take(&mut literal)));
                }
                parts.push(slot.cel.clone());
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            literal.push(c);
        }
        rest = chars.as_str();
    }
    if !literal.is_empty() || parts.is_empty() {
        parts.push(lit(&literal));
    }
    parts.join(" + ")
}

/// A record of one error, as a CEL list: `[message]`, or `[before, value, after]` when the
/// message quotes a value the user gave (quoted and clipped only when the message is shown, for
/// the few errors a denial lists). `value` is the placeholder the value was rendered with and the
/// CEL of the raw value.
pub fn record(rendered: &str, value: Option<(&str, &str)>, slots: &[Slot]) -> String {
    if let Some((mark, cel)) = value {
        let shown = format!("{mark:?}");
        if let Some((before, after)) = rendered.split_once(&shown) {
            // string(): CEL list literals are homogeneous, and object fields are dyn.
            return format!("[{}, string({cel}), {}]", template(before, slots), template(after, slots));
        }
    }
    format!("[{}]", template(rendered, slots))
}

/// One record as the message shows it.
pub fn show_record(r: &str) -> String {
    let value = bind(&clip(&format!("{r}[1]")), "c", &debug("c"));
    format!("(size({r}) == 1 ? {r}[0] : {r}[0] + {value} + {r}[2])")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_what_cel_needs() {
        assert_eq!(lit("a'b\\c\n\u{1}"), r"'a\'b\\c\n\x01'");
        assert_eq!(lit("\u{a0}\u{85}é😀"), r"'\u00a0\u0085\u00e9\U0001f600'");
        assert_eq!(lit_list(["In", "NotIn"]), "['In', 'NotIn']");
    }

    #[test]
    fn rust_escapes_control_characters_and_a_few_latin_1_ones() {
        let escapes = debug_escapes();
        let find = |c: char| escapes.iter().find(|(e, _)| *e == c).map(|(_, s)| s.as_str());
        assert_eq!(find('\n'), Some("\\n"));
        assert_eq!(find('\u{0}'), Some("\\0"));
        assert_eq!(find('\u{1}'), Some("\\u{1}"));
        assert_eq!(find('"'), Some("\\\""));
        assert_eq!(find('\\'), Some("\\\\"));
        assert_eq!(find('\u{a0}'), Some("\\u{a0}"));
        assert_eq!(find('\''), None);
        assert_eq!(find('é'), None);
        assert!(escaped_class().starts_with("\\x{0}-\\x{1f}"), "{}", escaped_class());
    }

    #[test]
    fn templates_replace_placeholders_raw_and_quoted() {
        let rendered = format!("{}.values: the {:?} was {}", MARKS[0], MARKS[1], NUMBERS[0]);
        let t = template(
            &rendered,
            &[
                Slot::raw(MARKS[0], "p"),
                Slot::debug_plain(MARKS[1], "r.operator"),
                Slot::number(NUMBERS[0], "n"),
            ],
        );
        assert_eq!(t, "p + '.values: the ' + ('\"' + r.operator + '\"') + ' was ' + string(n)");
        let r = record(&format!("x: Invalid value: {:?}: bad", MARKS[2]), Some((MARKS[2], "v")), &[]);
        assert_eq!(r, "['x: Invalid value: ', string(v), ': bad']");
    }

    #[test]
    fn flatten_and_ranges() {
        assert_eq!(range(2, 5), "[2, 3, 4]");
        assert_eq!(indexes("n", &[2, 4]), "(n <= 2 ? [0, 1] : [0, 1, 2, 3])");
        assert_eq!(
            flatten("L", 3),
            "[L].map(l, ((size(l) > 0 ? l[0] : []) + ((size(l) > 1 ? l[1] : []) + (size(l) > 2 ? l[2] : []))))[0]"
        );
    }
}
