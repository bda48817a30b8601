//! Server text is stored and logged only with this enrollment's own personal data removed: a
//! server that echoes the request (a 400 quoting the create body) must not put the customer's
//! email, phone or the billing password into a log line or the database.

use base64::Engine as _;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::config::OneShotConfig;
use crate::evidence::Pii;

/// What replaces a personal value.
pub const MARK: &str = "[redacted]";

/// The personal values of one enrollment (and the configuration's secrets), to be cut out of
/// any text before it is kept.
#[derive(Debug, Default)]
pub struct Redactor {
    // Personal values and secrets: wiped from memory with the redactor.
    needles: Vec<Zeroizing<String>>,
}

impl Redactor {
    pub fn new(pii: &Pii, cfg: &OneShotConfig) -> Redactor {
        let mut needles: Vec<Zeroizing<String>> =
            vec![pii.customer.email.clone().into(), pii.customer.mobile_phone_number.clone().into()];
        // The old Optimizer shows the phone as a number without `+`.
        let digits: String = pii.customer.mobile_phone_number.chars().filter(char::is_ascii_digit).collect();
        needles.push(digits.into());
        for value in pii.ocr_data.values() {
            match value {
                Value::String(s) => needles.push(s.clone().into()),
                Value::Number(n) => needles.push(n.to_string().into()),
                _ => {}
            }
        }
        needles.extend(Redactor::secrets_only(cfg).needles);
        // Short values ("ES", "M") would blank out ordinary words; longest first so that a
        // value containing another is removed whole.
        needles.retain(|n| n.chars().count() >= 4);
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor { needles }
    }

    /// Only the configuration's secrets (once an enrollment's evidence is erased).
    pub fn secrets_only(cfg: &OneShotConfig) -> Redactor {
        let mut needles: Vec<Zeroizing<String>> = Vec::new();
        if let Some(password) = &cfg.billing_password {
            needles.push(base64::engine::general_purpose::STANDARD.encode(password.as_bytes()).into());
            needles.push(password.clone());
        }
        needles.retain(|n| n.chars().count() >= 4);
        Redactor { needles }
    }

    /// `text` with every personal value replaced by [`MARK`] (ASCII case ignored).
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            out = replace_ignoring_case(&out, needle.as_str());
        }
        out
    }
}

fn replace_ignoring_case(haystack: &str, needle: &str) -> String {
    let (lower_hay, lower_needle) = (haystack.to_ascii_lowercase(), needle.to_ascii_lowercase());
    let mut out = String::with_capacity(haystack.len());
    let mut last = 0;
    // ASCII lower-casing keeps byte offsets, so matches in the copy are matches in the original.
    for (at, _) in lower_hay.match_indices(&lower_needle) {
        if at < last {
            continue;
        }
        out.push_str(&haystack[last..at]);
        out.push_str(MARK);
        last = at + needle.len();
    }
    out.push_str(&haystack[last..]);
    out
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
}
