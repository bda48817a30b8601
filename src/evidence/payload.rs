//! The exact JSON bodies of the One-Shot API, built from validated data.
//!
//! Field names follow the OpenAPI schemas `CreateReqObject_VID` and `UploadData_VID`. The
//! customizable objects (`acceptance`, `ocr_data`, `security_checks`) are sent as given.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::Pii;
use crate::config::OneShotConfig;

/// The body of "create VideoID request".
pub fn create_body(cfg: &OneShotConfig, pii: &Pii) -> Value {
    let mut body = Map::new();
    body.insert("mobile_phone_number".into(), pii.customer.mobile_phone_number.clone().into());
    body.insert("email".into(), pii.customer.email.clone().into());
    body.insert("registration_authority".into(), cfg.registration_authority.clone().into());
    body.insert("profile".into(), cfg.profile.clone().into());
    if let (Some(user), Some(password)) = (&cfg.billing_username, &cfg.billing_password) {
        body.insert("billing_username".into(), user.clone().into());
        // The API wants the billing password in Base64; the file holds it in clear.
        let encoded = base64::engine::general_purpose::STANDARD.encode(password.as_bytes());
        body.insert("billing_password".into(), encoded.into());
    }
    if let Some(env) = &cfg.env {
        body.insert("env".into(), env.clone().into());
    }
    if let Some(mode) = cfg.videoid_mode {
        body.insert("videoid_mode".into(), mode.into());
    }
    if let Some(url) = &cfg.webhook_url {
        body.insert("webhook_url".into(), url.clone().into());
    }
    Value::Object(body)
}

/// The body of "upload evidences": `images` holds `(slot name, raw bytes)` in send order.
/// Images are standard Base64 with padding and without line breaks.
pub fn evidences_body(pii: &Pii, images: &[(String, Vec<u8>)]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let images: Map<String, Value> =
        images.iter().map(|(name, bytes)| (name.clone(), Value::String(b64.encode(bytes)))).collect();
    json!({
        "acceptance": pii.acceptance,
        "videoid_data": {
            "images": images,
            "ocr_data": pii.ocr_data,
            "security_checks": pii.security_checks,
            "similarity_level": pii.similarity_level,
        }
    })
}
