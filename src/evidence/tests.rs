use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::config::EvidenceLimits;
use oneshot_protocol::Generation;

/// The pixels of a `w`×`h` RGB image with a gradient, so it is not trivially compressible.
fn gradient(w: u32, h: u32) -> Vec<u8> {
    (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, 128])).collect()
}

/// `pixels` (RGB or grey, as `color` says) encoded as a baseline JPEG at `quality`.
fn encode_jpeg(pixels: &[u8], w: u32, h: u32, color: jpeg_encoder::ColorType, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality).encode(pixels, w as u16, h as u16, color).unwrap();
    out
}

/// A small real JPEG of `w`×`h` (the gradient).
fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode_jpeg(&gradient(w, h), w, h, jpeg_encoder::ColorType::Rgb, 75)
}

/// A small real PNG of `w`×`h` (the gradient).
fn png(w: u32, h: u32) -> Vec<u8> {
    media::encode_png(w, h, png::ColorType::Rgb, &gradient(w, h)).unwrap()
}

/// A JPEG decoded in full to RGB (all components, upsampled and converted), leniently as image
/// viewers decode: its width, height and pixels; the error when it does not decode.
fn decode_rgb(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    let options = DecoderOptions::default().set_strict_mode(false).jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let rgb = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no frame header")?;
    Ok((u32::from(info.width), u32::from(info.height), rgb))
}

/// The demo's sample clip: a real H.264/MP4 file.
fn mp4() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples/video.mp4")).unwrap()
}

/// Validates with the real prober (the capture helper built beside the tests).
fn validate(path: &Path, limits: &EvidenceLimits) -> Result<Enrollment, EvidenceError> {
    validate_for(path, limits, Generation::Old)
}

fn validate_for(path: &Path, limits: &EvidenceLimits, generation: Generation) -> Result<Enrollment, EvidenceError> {
    validate_manifest(
        path,
        limits,
        ManifestOptions { allow_outside: false, video: &HelperProber::cold(), generation, sealed: None },
    )
    // The video's probe, which the queue awaits before committing, awaited here.
    .and_then(|e| e.video_media().map(|_| e))
}

/// A temp dir holding a valid manifest and its artifacts; `edit` changes the manifest first.
fn fixture(edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("front.jpg", jpeg(320, 200)),
        ("rear.jpg", jpeg(320, 200)),
        ("photo.png", png(60, 75)),
        ("selfie.jpg", jpeg(200, 200)),
        ("video.mp4", mp4()),
    ] {
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
    EvidenceLimits { max_image_bytes: 64 * 1024, max_video_bytes: 1024 * 1024, ..EvidenceLimits::default() }
}

/// Applies `edit` and asserts a violation on `field` whose rule mentions `needle`.
fn check(edit: impl FnOnce(&mut Value), field: &str, needle: &str) {
    let (_dir, path) = fixture(edit);
    let err = validate(&path, &limits()).expect_err("must be rejected");
    assert!(
        err.violations().iter().any(|v| v.field == field && v.rule.contains(needle)),
        "expected {field}: …{needle}… in {err}"
    );
}

#[test]
fn valid_manifest_is_accepted_with_sniffed_kinds() {
    let (_dir, path) = fixture(|_| {});
    let e = validate(&path, &limits()).unwrap();
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
    assert_eq!(e.video.size, mp4().len() as u64);
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
    let mut big = jpeg(200, 200);
    big.resize(70 * 1024, 0);
    std::fs::write(dir.path().join("selfie.jpg"), &big).unwrap();
    let err = validate(&path, &limits()).unwrap_err();
    assert_eq!(err.violations().len(), 1, "{err}");
    assert_eq!(err.violations()[0].field, "images.document_owner");
    assert!(err.violations()[0].rule.contains("over the limit of 65536 bytes"), "{err}");
}

#[test]
fn rear_image_is_optional_and_words_are_accepted_for_similarity() {
    let (_dir, path) = fixture(|m| {
        m["images"].as_object_mut().unwrap().remove("document_rear");
        m["similarity_level"] = json!("high");
        m["ocr_data"]["id_document_type"] = json!("PAS");
    });
    let e = validate(&path, &limits()).unwrap();
    assert_eq!(e.images.len(), 3);
    assert_eq!(e.pii.similarity_level, json!("high"));
}

/// The new Optimizer's schema declares an integer: a word is refused for it, saying why, and is
/// never turned into an invented number; an integer passes for both generations.
#[test]
fn similarity_words_are_refused_for_the_new_optimizer() {
    let (_dir, path) = fixture(|m| m["similarity_level"] = json!("high"));
    let err = validate_for(&path, &limits(), Generation::New).unwrap_err();
    assert_eq!(err.violations().len(), 1, "{err}");
    assert_eq!(err.violations()[0].field, "similarity_level");
    assert!(err.violations()[0].rule.contains("integer from 0 to 100 for the new Optimizer"), "{err}");
    let (_dir, path) = fixture(|m| m["similarity_level"] = json!(87));
    assert_eq!(validate_for(&path, &limits(), Generation::New).unwrap().pii.similarity_level, json!(87));
}

#[test]
fn all_problems_are_reported_together() {
    let (_dir, path) = fixture(|m| {
        m["similarity_level"] = json!(500);
        m["customer"]["email"] = json!("nope");
        m["video"] = json!("front.jpg");
    });
    let err = validate(&path, &limits()).unwrap_err();
    let fields: Vec<_> = err.violations().iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["customer.email", "similarity_level", "video"]);
}

/// Pins the exact JSON sent to the API; set `UPDATE_GOLDEN=1` to rewrite the files on purpose.
#[test]
fn payloads_match_golden_files() {
    let (_dir, path) = fixture(|_| {});
    let e = validate(&path, &limits()).unwrap();
    let images: Vec<_> = e
        .images
        .iter()
        .map(|a| match &a.content {
            Content::Bytes(b) => (a.name.clone(), b.clone()),
            Content::File(_) | Content::Sealed(..) => panic!("images are held as cleaned bytes"),
        })
        .collect();
    let evidences = evidences_body(&e.pii, &images);
    let cfg = crate::config::build(
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
            std::fs::set_permissions(d.join("pw"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
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
    use base64::Engine as _;
    assert!(!front.contains('\n') && front.len().is_multiple_of(4), "padded, one line");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(front).unwrap(), images[0].1);
    // `videoid_mode` is sent only when configured, as an integer (the vendor's External-mode
    // example sends 1); the golden body above has none.
    assert!(create.get("videoid_mode").is_none());
    let mut with_mode = cfg.oneshot.clone();
    with_mode.videoid_mode = Some(1);
    assert_eq!(create_body(&with_mode, &e.pii)["videoid_mode"], serde_json::json!(1));
}

/// A JPEG carrying an EXIF block with a GPS tag and a maker note, an ICC profile, a comment and
/// bytes after its end: all of it goes, and what remains decodes to the same pixels.
#[test]
fn images_leave_without_metadata() {
    let clean = jpeg(320, 200);
    let secret = b"GPS 40.4168N 3.7038W serial SN-12345 MakerNote";
    let segment = |marker: u8, body: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    };
    let exif = [b"Exif\0\0".as_slice(), secret].concat();
    let icc = [b"ICC_PROFILE\0\x01\x01".as_slice(), secret].concat();
    let dirty = [&clean[..2], &segment(0xE1, &exif), &segment(0xE2, &icc), &segment(0xFE, secret), &clean[2..], secret]
        .concat();
    let out = media::clean_image(&dirty, MediaKind::Jpeg, "document_front", 40_000_000).unwrap();
    assert!(!out.bytes.windows(secret.len()).any(|w| w == secret), "metadata survived");
    assert!(out.bytes.ends_with(&[0xFF, 0xD9]), "nothing after the end of the image");
    let decoded = |b: &[u8]| decode_rgb(b).unwrap();
    assert_eq!(decoded(&out.bytes), decoded(&clean), "the pixels are untouched");

    // PNG: text, EXIF and time chunks go, the critical chunks stay (CRCs intact, so it decodes).
    let png = png(60, 75);
    let chunk = |kind: &[u8; 4], body: &[u8]| {
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(body);
        c.extend_from_slice(&[0, 0, 0, 0]);
        c
    };
    let ihdr_end = 8 + 25;
    let dirty = [&png[..ihdr_end], &chunk(b"tEXt", secret), &chunk(b"eXIf", secret), &png[ihdr_end..], secret].concat();
    let out = media::clean_image(&dirty, MediaKind::Png, "document_photo", 40_000_000).unwrap();
    assert!(!out.bytes.windows(secret.len()).any(|w| w == secret), "metadata survived");
    assert_eq!(out.bytes, png, "a clean PNG is rewritten byte for byte");
}

use proptest::strategy::Strategy as _;

proptest::proptest! {
    /// Any bytes as a manifest: a value or an error, never a panic; what parses strictly also
    /// parses as ordinary JSON to the same value.
    #[test]
    fn the_manifest_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        if let Ok(v) = strict_json::parse(&bytes) {
            proptest::prop_assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), v);
        }
    }

    /// JSON-shaped manifests with random keys and values: validation names fields, never panics.
    #[test]
    fn validation_of_arbitrary_json_reports_fields(
        keys in proptest::collection::vec("[a-z_]{1,12}", 0..6),
        values in proptest::collection::vec(proptest::prop_oneof![
            proptest::strategy::Just(Value::Null),
            proptest::num::i64::ANY.prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
        ], 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let map: serde_json::Map<String, Value> = keys.into_iter().zip(values).collect();
        let path = dir.path().join("m.json");
        std::fs::write(&path, serde_json::to_vec(&map).unwrap()).unwrap();
        let err = validate(&path, &limits()).unwrap_err();
        proptest::prop_assert!(!err.violations().is_empty());
        proptest::prop_assert!(err.violations().iter().all(|v| !v.field.is_empty() && !v.rule.is_empty()));
    }
}

/// A small file may declare a huge picture: the header's size is checked against
/// `evidence.max_image_megapixels` before a pixel is decoded.
#[test]
fn an_image_bomb_is_refused_by_its_header_before_decoding() {
    let mut bomb = jpeg(320, 200);
    // Rewrite the frame header (SOF0: FF C0, length, precision, height, width) to 11990x11990.
    let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG has SOF0");
    bomb[sof + 5..sof + 7].copy_from_slice(&11_990u16.to_be_bytes());
    bomb[sof + 7..sof + 9].copy_from_slice(&11_990u16.to_be_bytes());
    let err = media::clean_image(&bomb, MediaKind::Jpeg, "document_front", 40_000_000).unwrap_err();
    assert!(err.contains("11990x11990") && err.contains("143.8 MP") && err.contains("max_image_megapixels"), "{err}");
    // The same picture declared at its true size is fine: only the declared size was refused.
    assert!(media::clean_image(&jpeg(320, 200), MediaKind::Jpeg, "document_front", 40_000_000).is_ok());
}

/// Who made each claim about the customer is optional, but when given it covers every check
/// and the similarity level, each `operator` or `software:NAME`; it is kept beside the evidence.
#[test]
fn claims_name_their_source_or_none_at_all() {
    let sources = json!({"liveliness": "operator", "documents_match": "software:FaceCheck 2.1",
                         "vendor_score": "software:FaceCheck 2.1", "similarity_level": "software:FaceCheck 2.1"});
    let (_d, path) = fixture(|m| m["claims_source"] = sources.clone());
    let e = validate(&path, &limits()).unwrap();
    assert_eq!(Value::Object(e.claims_source), sources);
    let (_d, path) = fixture(|_| {});
    assert!(validate(&path, &limits()).unwrap().claims_source.is_empty(), "not stated");
    check(
        |m| {
            m["claims_source"] =
                json!({"liveliness": "operator", "documents_match": "operator", "vendor_score": "operator"})
        },
        "claims_source.similarity_level",
        "say who made this claim",
    );
    check(
        |m| m["claims_source"] = json!({"liveliness": "me", "documents_match": "operator", "vendor_score": "operator", "similarity_level": "operator"}),
        "claims_source.liveliness",
        "\"operator\" or \"software:NAME\"",
    );
    check(
        |m| m["claims_source"] = json!({"liveliness": "software: ", "documents_match": "operator", "vendor_score": "operator", "similarity_level": "operator"}),
        "claims_source.liveliness",
        "a name of 1 to 100 characters",
    );
    check(
        |m| {
            m["claims_source"] = json!({"liveliness": "operator", "documents_match": "operator", "vendor_score": "operator",
                                        "similarity_level": "operator", "otp_validation": "operator"})
        },
        "claims_source.otp_validation",
        "unknown key",
    );
    check(|m| m["claims_source"] = json!("operator"), "claims_source", "must be a JSON object");
}

/// What the full decode makes of `bytes`: Ok, or refused.
fn full_decode(bytes: &[u8]) -> bool {
    decode_rgb(bytes).is_ok()
}

#[test]
fn the_luma_check_takes_colour_and_grey_jpegs_and_judges_damage_as_the_full_decode_does() {
    let grey = {
        let pixels: Vec<u8> = (0..400u32).flat_map(|y| (0..640u32).map(move |x| ((x ^ y) & 0xff) as u8)).collect();
        encode_jpeg(&pixels, 640, 400, jpeg_encoder::ColorType::Luma, 75)
    };
    for (name, bytes) in [("colour", jpeg(641, 403)), ("grey", grey)] {
        let clean = media::clean_image(&bytes, MediaKind::Jpeg, "document_front", u64::MAX)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((clean.width, clean.height), decode_rgb(&bytes).map(|(w, h, _)| (w, h)).unwrap(), "{name}");
        // Its headers, a few bytes of its scan, then the end marker: the same verdict as the
        // full decode (both lenient about a short scan, as image viewers are).
        let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let cut = [&bytes[..sos + 40], &[0xFF, 0xD9][..]].concat();
        let luma = media::clean_image(&cut, MediaKind::Jpeg, "document_front", u64::MAX);
        assert_eq!(luma.is_ok(), full_decode(&cut), "{name}: {luma:?}");
        // A Huffman table that cannot be: both refuse it, naming the decode.
        let dht = bytes.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        let mut broken = bytes.clone();
        broken[dht + 5..dht + 21].fill(0xFF);
        let err = media::clean_image(&broken, MediaKind::Jpeg, "document_front", u64::MAX).unwrap_err();
        assert!(err.contains("jpeg image"), "{name}: {err}");
        assert!(!full_decode(&broken), "{name}: the full decode agrees");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// The luma-only check of a damaged JPEG (cut short, or bytes overwritten anywhere) refuses
    /// whatever the full decode (RGB, every component) refuses: reading less of each pixel never
    /// lets more through.
    #[test]
    fn the_luma_check_refuses_what_the_full_decode_refuses(
        cut in 0.0f64..1.0,
        flips in proptest::collection::vec((0.0f64..1.0, proptest::num::u8::ANY), 0..6),
    ) {
        let mut bytes = jpeg(400, 320);
        for (at, value) in flips {
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] = value;
        }
        bytes.truncate(((bytes.len() as f64) * cut).max(2.0) as usize);
        let luma = media::clean_image(&bytes, MediaKind::Jpeg, "document_front", u64::MAX);
        if let Ok(clean) = &luma {
            proptest::prop_assert!(full_decode(&clean.bytes), "the luma check took what the full decode refuses");
        }
    }
}

/// A camera-like JPEG (noise, quality 90) whose scan is several times the part of it that the
/// check decodes, so that the first-rows path is the one taken.
fn noisy_jpeg() -> Vec<u8> {
    static ENCODED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ENCODED.get_or_init(encode_noisy_jpeg).clone()
}

fn encode_noisy_jpeg() -> Vec<u8> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<u8> = (0..900 * 700)
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            [seed as u8, (seed >> 8) as u8, (seed >> 16) as u8]
        })
        .collect();
    encode_jpeg(&pixels, 900, 700, jpeg_encoder::ColorType::Rgb, 90)
}

#[test]
fn a_large_baseline_jpeg_is_judged_by_its_first_rows_and_its_whole_structure() {
    let bytes = noisy_jpeg();
    assert!(bytes.len() > 4 * 64 * 1024, "the scan must be well over the decoded part: {} bytes", bytes.len());
    let clean = media::clean_image(&bytes, MediaKind::Jpeg, "document_front", u64::MAX).unwrap();
    assert_eq!((clean.width, clean.height), (900, 700));
    // A marker planted in the middle of the scan, past the decoded rows: the structure walk
    // still sees it (the bytes after it are not a segment).
    let mut planted = bytes.clone();
    let middle = planted.len() / 2;
    planted[middle..middle + 2].copy_from_slice(&[0xFF, 0xC4]);
    assert!(media::clean_image(&planted, MediaKind::Jpeg, "document_front", u64::MAX).is_err());
    // Cut short anywhere: no end marker.
    let cut = &bytes[..bytes.len() * 3 / 4];
    let err = media::clean_image(cut, MediaKind::Jpeg, "document_front", u64::MAX).unwrap_err();
    assert!(err.contains("no end marker"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// The first-rows check of a large baseline JPEG, its headers or its scan damaged anywhere
    /// (bytes overwritten, a marker planted), refuses whatever the full decode (RGB, every
    /// component) refuses.
    #[test]
    fn the_first_rows_refuse_what_the_full_decode_refuses(
        flips in proptest::collection::vec((0.0f64..1.0, proptest::num::u8::ANY), 1..8),
        in_headers in proptest::bool::ANY,
    ) {
        let mut bytes = noisy_jpeg();
        let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let (from, to) = if in_headers { (2, sos + 14) } else { (sos + 14, bytes.len() - 2) };
        for (at, value) in flips {
            bytes[from + ((to - from - 1) as f64 * at) as usize] = value;
        }
        let checked = media::clean_image(&bytes, MediaKind::Jpeg, "document_front", u64::MAX);
        if let Ok(clean) = &checked {
            proptest::prop_assert!(full_decode(&clean.bytes), "the first rows took what the full decode refuses");
        }
    }
}
