use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::config::EvidenceLimits;

const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xFF\xD9";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0DIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00";
const MP4: &[u8] = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2\x00\x00\x00\x08free";

/// A temp dir holding a valid manifest and its artifacts; `edit` changes the manifest first.
fn fixture(edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in
        [("front.jpg", JPEG), ("rear.jpg", JPEG), ("photo.png", PNG), ("selfie.jpg", JPEG), ("video.mp4", MP4)]
    {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let mut manifest = json!({
        "customer": {"mobile_phone_number": "+34699999999", "email": "ana@example.com"},
        "acceptance": {"description": "Acepto", "ip": "192.0.2.10", "user-agent": "kiosk/1",
                       "date": 1622823879708u64, "url-doc-privacypolicy": "https://example.com/p",
                       "url-doc-termsconditions": "https://example.com/t", "custom_flag": [1, 2]},
        "ocr_data": {"given_name": "Ana", "surname_1": "García", "serial_number": "12345678Z",
                     "id_document_type": "IDC", "id_document_country": "ES", "nationality": "ESP"},
        "security_checks": {"liveliness": true, "documents_match": true, "vendor_score": 0.93},
        "similarity_level": 87,
        "images": {"document_front": "front.jpg", "document_rear": "rear.jpg",
                   "document_photo": "photo.png", "document_owner": "selfie.jpg"},
        "video": "video.mp4"
    });
    edit(&mut manifest);
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    (dir, path)
}

fn limits() -> EvidenceLimits {
    EvidenceLimits { max_image_bytes: 1024, max_video_bytes: 1024 }
}

/// Applies `edit` and asserts a violation on `field` whose rule mentions `needle`.
fn check(edit: impl FnOnce(&mut Value), field: &str, needle: &str) {
    let (_dir, path) = fixture(edit);
    let err = validate_manifest(&path, &limits()).expect_err("must be rejected");
    assert!(
        err.violations().iter().any(|v| v.field == field && v.rule.contains(needle)),
        "expected {field}: …{needle}… in {err}"
    );
}

#[test]
fn valid_manifest_is_accepted_with_sniffed_kinds() {
    let (_dir, path) = fixture(|_| {});
    let e = validate_manifest(&path, &limits()).unwrap();
    let kinds: Vec<_> = e.images.iter().map(|a| (a.name.as_str(), a.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("document_front", MediaKind::Jpeg),
            ("document_rear", MediaKind::Jpeg),
            ("document_photo", MediaKind::Png),
            ("document_owner", MediaKind::Jpeg)
        ]
    );
    assert_eq!(e.video.kind, MediaKind::Mp4);
    assert_eq!(e.video.size, MP4.len() as u64);
}

#[test]
fn each_rule_names_field_and_rule() {
    check(
        |m| {
            m["ocr_data"].as_object_mut().unwrap().remove("given_name");
        },
        "ocr_data.given_name",
        "required",
    );
    check(|m| m["ocr_data"]["surname_1"] = json!(" "), "ocr_data.surname_1", "empty");
    check(
        |m| {
            m["ocr_data"].as_object_mut().unwrap().remove("serial_number");
        },
        "ocr_data.serial_number",
        "required",
    );
    check(|m| m["ocr_data"]["id_document_type"] = json!("DNI"), "ocr_data.id_document_type", "IDC, PAS, PNO, TIN");
    check(|m| m["ocr_data"]["id_document_country"] = json!("XX"), "ocr_data.id_document_country", "ISO 3166-1");
    check(|m| m["ocr_data"]["id_document_country"] = json!("es"), "ocr_data.id_document_country", "ISO 3166-1");
    check(|m| m["customer"]["email"] = json!("ana@"), "customer.email", "email address");
    check(|m| m["customer"]["email"] = json!("ana example@x.com"), "customer.email", "email address");
    check(|m| m["ocr_data"]["email"] = json!("x@y"), "ocr_data.email", "email address");
    check(|m| m["customer"]["mobile_phone_number"] = json!("699999999"), "customer.mobile_phone_number", "E.164");
    check(
        |m| m["customer"]["mobile_phone_number"] = json!("+3469999999999999"),
        "customer.mobile_phone_number",
        "E.164",
    );
    check(|m| m["customer"]["mobile_phone_number"] = json!("+34 699 99 99"), "customer.mobile_phone_number", "E.164");
    check(
        |m| {
            m["customer"].as_object_mut().unwrap().remove("email");
        },
        "customer.email",
        "required",
    );
    check(|m| m["similarity_level"] = json!(101), "similarity_level", "0 to 100");
    check(|m| m["similarity_level"] = json!(-1), "similarity_level", "0 to 100");
    check(|m| m["similarity_level"] = json!(87.5), "similarity_level", "0 to 100");
    check(|m| m["similarity_level"] = json!("very high"), "similarity_level", "\"low\"");
    check(|m| m["security_checks"]["liveliness"] = json!("yes"), "security_checks.liveliness", "boolean");
    check(|m| m["security_checks"]["otp_validation"] = json!(1), "security_checks.otp_validation", "boolean");
    check(|m| m["extra"] = json!(1), "extra", "unknown key");
    check(|m| m["images"]["document_back"] = json!("rear.jpg"), "images.document_back", "unknown key");
    check(|m| m["customer"]["name"] = json!("Ana"), "customer.name", "unknown key");
    check(|m| m["acceptance"] = json!("yes"), "acceptance", "JSON object");
    check(|m| m["images"]["document_front"] = json!("missing.jpg"), "images.document_front", "cannot open");
    check(|m| m["images"]["document_front"] = json!("video.mp4"), "images.document_front", "JPEG or PNG");
    check(|m| m["video"] = json!("front.jpg"), "video", "MP4");
    check(
        |m| {
            m["images"].as_object_mut().unwrap().remove("document_owner");
        },
        "images.document_owner",
        "required",
    );
    check(
        |m| {
            m.as_object_mut().unwrap().remove("video");
        },
        "video",
        "required",
    );
}

#[test]
fn oversize_artifacts_name_the_limit() {
    let (dir, path) = fixture(|_| {});
    let mut big = JPEG.to_vec();
    big.resize(2000, 0);
    std::fs::write(dir.path().join("selfie.jpg"), &big).unwrap();
    let err = validate_manifest(&path, &limits()).unwrap_err();
    assert_eq!(err.violations().len(), 1, "{err}");
    assert_eq!(err.violations()[0].field, "images.document_owner");
    assert!(err.violations()[0].rule.contains("over the limit of 1024 bytes"), "{err}");
}

#[test]
fn rear_image_is_optional_and_words_are_accepted_for_similarity() {
    let (_dir, path) = fixture(|m| {
        m["images"].as_object_mut().unwrap().remove("document_rear");
        m["similarity_level"] = json!("high");
        m["ocr_data"]["id_document_type"] = json!("PAS");
    });
    let e = validate_manifest(&path, &limits()).unwrap();
    assert_eq!(e.images.len(), 3);
    assert_eq!(e.pii.similarity_level, json!("high"));
}

#[test]
fn all_problems_are_reported_together() {
    let (_dir, path) = fixture(|m| {
        m["similarity_level"] = json!(500);
        m["customer"]["email"] = json!("nope");
        m["video"] = json!("front.jpg");
    });
    let err = validate_manifest(&path, &limits()).unwrap_err();
    let fields: Vec<_> = err.violations().iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["customer.email", "similarity_level", "video"]);
}

/// Pins the exact JSON sent to the API; set `UPDATE_GOLDEN=1` to rewrite the files on purpose.
#[test]
fn payloads_match_golden_files() {
    let (_dir, path) = fixture(|_| {});
    let e = validate_manifest(&path, &limits()).unwrap();
    let images: Vec<_> = e.images.iter().map(|a| (a.name.clone(), std::fs::read(&a.path).unwrap())).collect();
    let evidences = evidences_body(&e.pii, &images);
    let cfg = crate::config::validate(
        crate::config::from_toml(
            r#"[oneshot]
base_url = "https://optimizer.example.com/oneshot/api/v1"
registration_authority = "139"
profile = "PFnubeQAFCiudadano"
env = "sandbox"
billing_username = "billing@example.com"
billing_password_file = "pw"
webhook_url = "https://kiosk.example.com/hook"
[storage]
data_dir = "/tmp/x""#,
        )
        .unwrap(),
        &{
            let d = _dir.path().to_owned();
            std::fs::write(d.join("pw"), "s3cret\n").unwrap();
            d
        },
    )
    .unwrap();
    let create = create_body(&cfg.oneshot, &e.pii);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (name, value) in [("evidences.json", &evidences), ("create.json", &create)] {
        let produced = serde_json::to_string_pretty(value).unwrap() + "\n";
        let file = golden.join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&file, &produced).unwrap();
        }
        let expected = std::fs::read_to_string(&file).unwrap();
        assert_eq!(produced, expected, "{name} differs from the golden file");
    }
    // Standard Base64 with padding and no line breaks.
    let front = evidences["videoid_data"]["images"]["document_front"].as_str().unwrap();
    assert!(!front.contains('\n') && front.ends_with('='));
    // `videoid_mode` is sent only when configured, as an integer (the vendor's External-mode
    // example sends 1); the golden body above has none.
    assert!(create.get("videoid_mode").is_none());
    let mut with_mode = cfg.oneshot.clone();
    with_mode.videoid_mode = Some(1);
    assert_eq!(create_body(&with_mode, &e.pii)["videoid_mode"], serde_json::json!(1));
}
