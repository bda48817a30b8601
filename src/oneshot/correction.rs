//! Corrections of a request's OCR data before approval (`PUT /request/{pk}`): the fields an
//! operator may change, checked before anything is sent, and the update body, which carries the
//! request's own `scratchcard` and the fields the API requires, read from the server first.

use serde_json::{Map, Value};

/// The OCR fields of a request that can be corrected; `None` leaves one as the server has it.
/// Also the body of the local API's `POST /v1/enrollments/{id}/correct` (hence its schema).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OcrCorrection {
    pub given_name: Option<String>,
    pub surname_1: Option<String>,
    pub surname_2: Option<String>,
    /// `DD/MM/YYYY`, as the API writes it.
    #[schema(pattern = "^[0-9]{2}/[0-9]{2}/[0-9]{4}$")]
    pub birth_date: Option<String>,
    pub serial_number: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country_name: Option<String>,
}

/// A correction that breaks a rule: the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct BadCorrection {
    pub field: &'static str,
    pub rule: String,
}

impl OcrCorrection {
    fn fields(&self) -> [(&'static str, Option<&String>); 6] {
        [
            ("given_name", self.given_name.as_ref()),
            ("surname_1", self.surname_1.as_ref()),
            ("surname_2", self.surname_2.as_ref()),
            ("birth_date", self.birth_date.as_ref()),
            ("serial_number", self.serial_number.as_ref()),
            ("country_name", self.country_name.as_ref()),
        ]
    }

    /// Checks every given field; at least one must be given.
    pub fn check(&self) -> Result<(), BadCorrection> {
        let bad = |field, rule: &str| Err(BadCorrection { field, rule: rule.to_owned() });
        if self.fields().iter().all(|(_, v)| v.is_none()) {
            return bad(
                "correction",
                "give at least one of given_name, surname_1, surname_2, birth_date, serial_number, country_name",
            );
        }
        for (field, value) in self.fields() {
            let Some(value) = value else { continue };
            if value.trim().is_empty() || value.trim() != value {
                return bad(field, "must not be empty or start or end with spaces");
            }
            if value.chars().count() > 100 || value.chars().any(char::is_control) {
                return bad(field, "must be at most 100 characters, without control characters");
            }
        }
        if let Some(date) = &self.birth_date {
            let parts: Vec<&str> = date.split('/').collect();
            let ok = parts.len() == 3
                && parts.iter().zip([2, 2, 4]).all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_digit()))
                && (1..=31).contains(&parts[0].parse::<u32>().unwrap_or(0))
                && (1..=12).contains(&parts[1].parse::<u32>().unwrap_or(0));
            if !ok {
                return bad("birth_date", "must be DD/MM/YYYY");
            }
        }
        if let Some(country) = &self.country_name {
            if !crate::evidence::countries::is_assigned(country) {
                return bad("country_name", "must be an ISO 3166-1 alpha-2 code such as ES");
            }
        }
        Ok(())
    }

    /// The names of the fields given (for the audit trail: never their values).
    pub fn field_names(&self) -> Vec<&'static str> {
        self.fields().iter().filter(|(_, v)| v.is_some()).map(|(f, _)| *f).collect()
    }

    /// The update body: the request's details as the server has them (its `scratchcard` and the
    /// fields the API requires), with the corrections over them.
    pub fn body(&self, details: &Value, registration_authority: &str, profile: &str) -> Result<Value, String> {
        let scratchcard = match details.get("scratchcard") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err("the request's details carry no scratchcard, which an update needs".into()),
        };
        let mut body = Map::new();
        body.insert("scratchcard".into(), scratchcard.into());
        for key in [
            "email",
            "mobile_phone_number",
            "given_name",
            "surname_1",
            "surname_2",
            "birth_date",
            "serial_number",
            "country_name",
        ] {
            if let Some(v) = details.get(key).filter(|v| !v.is_null()) {
                body.insert(key.into(), v.clone());
            }
        }
        body.insert("registration_authority".into(), registration_authority.into());
        body.insert("profile".into(), profile.into());
        for (field, value) in self.fields() {
            if let Some(value) = value {
                body.insert(field.into(), value.clone().into());
            }
        }
        Ok(Value::Object(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn corrections_are_checked_field_by_field() {
        assert_eq!(OcrCorrection::default().check().unwrap_err().field, "correction");
        let c = |f: fn(&mut OcrCorrection)| {
            let mut c = OcrCorrection::default();
            f(&mut c);
            c.check()
        };
        assert!(c(|c| c.given_name = Some("ANA".into())).is_ok());
        assert_eq!(c(|c| c.given_name = Some(" ".into())).unwrap_err().field, "given_name");
        assert_eq!(c(|c| c.birth_date = Some("2000-01-01".into())).unwrap_err().field, "birth_date");
        assert_eq!(c(|c| c.birth_date = Some("31/13/2000".into())).unwrap_err().field, "birth_date");
        assert!(c(|c| c.birth_date = Some("01/02/2000".into())).is_ok());
        assert_eq!(c(|c| c.country_name = Some("XX".into())).unwrap_err().field, "country_name");
        assert_eq!(c(|c| c.serial_number = Some("A\u{7}".into())).unwrap_err().field, "serial_number");
    }

    #[test]
    fn the_body_keeps_the_servers_fields_and_puts_the_corrections_over_them() {
        let details = json!({"pk": 1, "status": "VIDEOREVIEW", "scratchcard": "1234567", "email": "a@b.c",
                             "mobile_phone_number": "+34600000000", "given_name": "ANNA", "country_name": "ES"});
        let c = OcrCorrection { given_name: Some("ANA".into()), ..Default::default() };
        let body = c.body(&details, "139", "PFnubeQAFCiudadano").unwrap();
        assert_eq!(
            body,
            json!({"scratchcard": "1234567", "email": "a@b.c", "mobile_phone_number": "+34600000000",
                   "given_name": "ANA", "country_name": "ES", "registration_authority": "139",
                   "profile": "PFnubeQAFCiudadano"})
        );
        assert!(c.body(&json!({"pk": 1}), "139", "p").is_err(), "no scratchcard");
        assert_eq!(c.field_names(), ["given_name"]);
    }
}
