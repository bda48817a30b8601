//! Server text is stored and logged only with personal data removed: a server that echoes the
//! request (a 400 quoting the create body) must not put the customer's email, phone, name or the
//! billing password into a log line, the database or an operator's terminal.
//!
//! Servers change text before they echo it, so matching is done on a normalized view of it:
//! JSON escapes (`Mu\u00f1oz`) and URL encoding (`ana%40example.com`) decoded, Unicode case
//! folded (`MUÑOZ`), and a phone's digits found whatever separates them (`+34 699 12 34 56`).
//! Names are removed at any length, as whole words; other values from four characters. Beside
//! the enrollment's own values, anything shaped like an email address or a phone number is
//! removed too ([`Redactor::generic`]): after the evidence is erased (review, signing) the
//! values themselves are gone, and so are they from this process.

use base64::Engine as _;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::config::OneShotConfig;
use crate::evidence::Pii;

/// What replaces a personal value.
pub const MARK: &str = "[redacted]";

/// Phone numbers are matched on their last digits (the national number; a server may drop or
/// rewrite the country code).
const PHONE_DIGITS: usize = 9;
/// A run of at least this many digits (separators allowed) is taken for a phone number.
const GENERIC_PHONE_DIGITS: usize = 7;

/// The personal values of one enrollment (and the configuration's secrets), to be cut out of
/// any text before it is kept.
#[derive(Debug, Default)]
pub struct Redactor {
    // Personal values and secrets, case-folded: wiped from memory with the redactor.
    needles: Vec<Needle>,
    // The digits of phone numbers (their last PHONE_DIGITS).
    phones: Vec<Zeroizing<String>>,
}

#[derive(Debug)]
struct Needle {
    folded: Zeroizing<Vec<char>>,
    /// Only as a whole word (names and short values).
    whole_word: bool,
}

impl Redactor {
    pub fn new(pii: &Pii, cfg: &OneShotConfig) -> Redactor {
        let mut r = Redactor::secrets_only(cfg);
        r.add(&pii.customer.email, false);
        let digits: String = pii.customer.mobile_phone_number.chars().filter(char::is_ascii_digit).collect();
        let tail = digits.len().saturating_sub(PHONE_DIGITS);
        r.phones.push(digits[tail..].to_owned().into());
        for (key, value) in &pii.ocr_data {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            // Names, whatever their length (a two-letter surname is still a surname), and each
            // of their words; other values only when long enough to mean something alone
            // ("ES" or "M" would blank out ordinary words).
            let name = key.contains("name") || key.starts_with("surname");
            if name || key == "serial_number" {
                r.add(&text, true);
                for word in text.split_whitespace().filter(|w| text.split_whitespace().count() > 1 && !w.is_empty()) {
                    r.add(word, true);
                }
            } else if text.chars().count() >= 4 {
                r.add(&text, false);
            }
        }
        // Longest first, so that a value containing another is removed whole.
        r.needles.sort_by_key(|n| std::cmp::Reverse(n.folded.len()));
        r.needles.dedup_by(|a, b| *a.folded == *b.folded);
        r
    }

    /// Only the configuration's secrets (once an enrollment's evidence is erased), and the
    /// generic shapes of emails and phone numbers.
    pub fn secrets_only(cfg: &OneShotConfig) -> Redactor {
        let mut r = Redactor::generic();
        if let Some(password) = &cfg.billing_password {
            r.add(&base64::engine::general_purpose::STANDARD.encode(password.as_bytes()), false);
            r.add(password, false);
        }
        r
    }

    /// No known value: only what looks like an email address or a phone number.
    pub fn generic() -> Redactor {
        Redactor::default()
    }

    fn add(&mut self, value: &str, whole_word: bool) {
        let folded: Vec<char> = value.trim().chars().flat_map(char::to_lowercase).collect();
        if !folded.is_empty() {
            self.needles.push(Needle { folded: folded.into(), whole_word });
        }
    }

    /// `text` with every personal value replaced by [`MARK`].
    pub fn apply(&self, text: &str) -> String {
        let units = normalize(text);
        let mut hits: Vec<(usize, usize)> = Vec::new(); // unit index ranges, end exclusive
        let chars: Vec<char> = units.iter().map(|u| u.c).collect();
        for needle in &self.needles {
            let n = needle.folded.len();
            let mut i = 0;
            while i + n <= chars.len() {
                if chars[i..i + n] == needle.folded[..] && (!needle.whole_word || word_bounded(&chars, i, i + n)) {
                    hits.push((i, i + n));
                    i += n;
                } else {
                    i += 1;
                }
            }
        }
        hits.extend(digit_runs(&chars, &self.phones));
        hits.extend(emails(&chars));
        if hits.is_empty() {
            return text.to_owned();
        }
        // Back to byte ranges of the original text, merged, each replaced once.
        let mut spans: Vec<(usize, usize)> =
            hits.into_iter().map(|(a, b)| (units[a].start, units[b - 1].end)).collect();
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end) in spans {
            if end <= last {
                continue;
            }
            let start = start.max(last);
            if start > last || last == 0 {
                out.push_str(&text[last..start]);
                out.push_str(MARK);
            }
            last = end;
        }
        out.push_str(&text[last..]);
        out
    }
}

/// One character of the normalized view and the bytes of the original it came from.
#[derive(Debug, Clone, Copy)]
struct Unit {
    c: char,
    start: usize,
    end: usize,
}

/// Decodes JSON escapes and URL encoding and folds case, keeping where each character came from.
fn normalize(text: &str) -> Vec<Unit> {
    let bytes = text.as_bytes();
    let mut units = Vec::with_capacity(text.len());
    let push = |c: char, start: usize, end: usize, units: &mut Vec<Unit>| {
        for f in c.to_lowercase() {
            units.push(Unit { c: f, start, end });
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        // `\uXXXX` (a surrogate pair as one character), and the short JSON escapes.
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if let Some((c, len)) = json_escape(&text[i..]) {
                push(c, i, i + len, &mut units);
                i += len;
                continue;
            }
        }
        // A run of `%XX`: the bytes of UTF-8 characters.
        if bytes[i] == b'%' {
            let mut run = Vec::new();
            let mut j = i;
            while j + 2 < bytes.len() && bytes[j] == b'%' {
                match std::str::from_utf8(&bytes[j + 1..j + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => run.push(b),
                    None => break,
                }
                j += 3;
            }
            if let Some(decoded) = (!run.is_empty()).then(|| String::from_utf8_lossy(&run).into_owned()) {
                let mut offset = 0;
                for c in decoded.chars() {
                    let len = c.len_utf8().min(run.len() - offset.min(run.len()));
                    push(c, i + 3 * offset, (i + 3 * (offset + len.max(1))).min(j), &mut units);
                    offset += c.len_utf8();
                }
                i = j;
                continue;
            }
        }
        let c = text[i..].chars().next().expect("a character starts here");
        push(c, i, i + c.len_utf8(), &mut units);
        i += c.len_utf8();
    }
    units
}

/// The character a JSON escape at the start of `s` stands for, and the escape's length.
fn json_escape(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    let short = match b.get(1)? {
        b'"' => Some('"'),
        b'\\' => Some('\\'),
        b'/' => Some('/'),
        b'n' => Some('\n'),
        b't' => Some('\t'),
        b'r' => Some('\r'),
        b'b' | b'f' => Some(' '),
        _ => None,
    };
    if let Some(c) = short {
        return Some((c, 2));
    }
    let hex = |at: usize| s.get(at..at + 4).and_then(|h| u32::from_str_radix(h, 16).ok());
    if b[1] != b'u' {
        return None;
    }
    let first = hex(2)?;
    if (0xD800..0xDC00).contains(&first) && s.get(6..8) == Some("\\u") {
        let second = hex(8)?;
        let c = char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second.checked_sub(0xDC00)?))?;
        return Some((c, 12));
    }
    Some((char::from_u32(first)?, 6))
}

fn word_bounded(chars: &[char], start: usize, end: usize) -> bool {
    let before = start.checked_sub(1).map(|i| chars[i]);
    let after = chars.get(end);
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(|c| c.is_alphanumeric())
}

/// Runs of digits with the separators phone numbers are written with: those holding one of
/// `phones` (its digits, in order) or long enough to be a phone number whatever it is.
fn digit_runs(chars: &[char], phones: &[Zeroizing<String>]) -> Vec<(usize, usize)> {
    let mut hits = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        let mut digits = String::new();
        while i < chars.len() && (chars[i].is_ascii_digit() || " -.()/\u{a0}".contains(chars[i])) {
            if chars[i].is_ascii_digit() {
                digits.push(chars[i]);
                end = i + 1;
            }
            i += 1;
        }
        let known = phones.iter().any(|p| !p.is_empty() && digits.contains(p.as_str()));
        if known || digits.len() >= GENERIC_PHONE_DIGITS {
            // A leading `+` goes with the number.
            let start = if start > 0 && chars[start - 1] == '+' { start - 1 } else { start };
            hits.push((start, end));
        }
    }
    hits
}

/// Whatever is shaped like an email address: a word of address characters around an `@`
/// whose domain has a dot.
fn emails(chars: &[char]) -> Vec<(usize, usize)> {
    let addressy = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let mut hits = Vec::new();
    for (at, c) in chars.iter().enumerate() {
        if *c != '@' {
            continue;
        }
        let mut start = at;
        while start > 0 && addressy(chars[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < chars.len() && addressy(chars[end]) {
            end += 1;
        }
        let domain: String = chars[at + 1..end].iter().collect();
        if start < at && domain.trim_matches('.').contains('.') {
            hits.push((start, end));
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::Customer;
    use serde_json::{json, Map};

    fn pii() -> Pii {
        let ocr: Map<String, Value> = serde_json::from_value(json!({
            "given_name": "Ana", "surname_1": "García", "serial_number": "12345678Z", "id_document_country": "ES"
        }))
        .unwrap();
        Pii {
            customer: Customer { mobile_phone_number: "+34699999999".into(), email: "Ana@Example.com".into() },
            acceptance: Map::new(),
            ocr_data: ocr,
            security_checks: Map::new(),
            similarity_level: json!(87),
        }
    }

    #[test]
    fn an_echoed_create_body_loses_its_personal_data() {
        let mut cfg = crate::config::tests::minimal_oneshot();
        cfg.billing_password = Some("s3cret-pass".to_owned().into());
        let r = Redactor::new(&pii(), &cfg);
        let echoed = r#"400 — invalid: {"email":"ana@example.com","mobile_phone_number":"+34699999999","billing_password":"czNjcmV0LXBhc3M=","surname_1":"García"} phone 34699999999 doc 12345678z in ES"#;
        let clean = r.apply(echoed);
        for secret in ["ana@example.com", "34699999999", "czNjcmV0LXBhc3M=", "García", "12345678"] {
            assert!(!clean.to_ascii_lowercase().contains(&secret.to_ascii_lowercase()), "{secret} in {clean}");
        }
        assert!(clean.contains("in ES") && clean.contains(MARK), "{clean}");
    }

    fn check(r: &Redactor, text: &str, gone: &[&str], kept: &[&str]) {
        let clean = r.apply(text);
        for g in gone {
            assert!(!clean.to_lowercase().contains(&g.to_lowercase()), "{g:?} left in {clean:?} (from {text:?})");
        }
        for k in kept {
            assert!(clean.contains(k), "{k:?} lost from {clean:?} (from {text:?})");
        }
        assert!(clean.contains(MARK), "{clean:?}");
    }

    #[test]
    fn what_servers_do_to_text_does_not_hide_personal_data() {
        let mut p = pii();
        p.ocr_data.insert("surname_1".into(), json!("Muñoz"));
        p.ocr_data.insert("surname_2".into(), json!("Li"));
        p.customer.mobile_phone_number = "+34699123456".into();
        let r = Redactor::new(&p, &crate::config::tests::minimal_oneshot());
        // Unicode case folding, JSON escapes, URL encoding.
        check(&r, "surname MUÑOZ is invalid", &["MUÑOZ"], &["surname", "is invalid"]);
        check(&r, r#"{"surname_1":"Mu\u00f1oz"}"#, &["mu\\u00f1oz", "Mu\\u00F1oz"], &["surname_1"]);
        check(&r, r#"{"surname_1":"MU\u00D1OZ"}"#, &["MU\\u00D1OZ"], &["surname_1"]);
        check(&r, "email=ana%40example.com&x=1", &["ana%40example", "example.com"], &["&x=1"]);
        check(&r, "name=Mu%C3%B1oz", &["Mu%C3%B1oz"], &["name="]);
        // Phones whatever the separators, with or without the country code.
        for phone in ["+34 699 123456", "+34-699-12-34-56", "(699) 123 456", "0034699123456", "699.123.456"] {
            check(&r, &format!("phone {phone} taken"), &["699", "123"], &["phone", "taken"]);
        }
        // Names of any length, as whole words only.
        check(&r, "surname LI does not match", &[" LI "], &["surname", "does not match"]);
        let clean = r.apply("list of links");
        assert_eq!(clean, "list of links", "a short name inside other words is left alone");
        // The generic shapes: an address and a number nobody told the redactor about.
        let g = Redactor::generic();
        check(&g, "contact someone.else@example.org now", &["someone.else", "example.org"], &["contact", "now"]);
        check(&g, "call +44 20 7946 0958", &["7946", "0958"], &["call"]);
        assert_eq!(g.apply("request 45001 is VIDEOREVIEW"), "request 45001 is VIDEOREVIEW", "ids stay");
    }
}
