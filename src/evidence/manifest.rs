//! The enrollment manifest (`enroll MANIFEST.json`) and its validation.

use std::fs::File;
use std::io::{Read, Seek as _};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::open::{read_manifest, Scope};
use super::probe::{PendingProbe, VideoCheck, VideoProber};
use super::sniff::{sniff_image, sniff_video, MediaKind};
use super::{countries, media, strict_json, EvidenceError, Violation};
use crate::config::EvidenceLimits;
use crate::spill::{SealedFiles, SpillKey};
use oneshot_protocol::{Generation, Slot};

/// The image slots of `videoid_data.images`, in the order they are sent.
pub const IMAGE_NAMES: [&str; 4] = Slot::NAMES;
const TOP_LEVEL_KEYS: [&str; 9] = [
    "customer",
    "acceptance",
    "ocr_data",
    "security_checks",
    "similarity_level",
    "claims_source",
    "images",
    "video",
    "capture",
];
/// Who made a claim about the customer: the operator, or named verification software.
const OPERATOR: &str = "operator";
const SOFTWARE_PREFIX: &str = "software:";
/// What `capture` may describe: each image slot and the video.
const CAPTURED: [&str; 5] = [Slot::NAMES[0], Slot::NAMES[1], Slot::NAMES[2], Slot::NAMES[3], "video"];
const DOCUMENT_TYPES: [&str; 4] = ["IDC", "PAS", "PNO", "TIN"];
/// The security checks the API documents; each must be a boolean. Others pass through as given.
const KNOWN_CHECKS: [&str; 7] = [
    "otp_validation",
    "documents_match",
    "data_integrity",
    "document_notcopy",
    "document_notexpired",
    "document_notunderage",
    "liveliness",
];

/// The signer's contact data, sent in the create body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub mobile_phone_number: String,
    pub email: String,
}

/// Every personal field of an enrollment: what the queue stores encrypted as one blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pii {
    pub customer: Customer,
    pub acceptance: Map<String, Value>,
    pub ocr_data: Map<String, Value>,
    pub security_checks: Map<String, Value>,
    pub similarity_level: Value,
}

/// What is queued for an artifact: the cleaned bytes of an image, or the one open handle of a
/// video (read again from its start when it is encrypted, never reopened by path).
#[derive(Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    File(File),
    /// A file the API's intake sealed on the disk ([`crate::spill`]), read in clear through its key.
    Sealed(File, Arc<SpillKey>),
}

/// An artifact named by the manifest, checked but not yet copied.
#[derive(Debug)]
pub struct ArtifactSource {
    /// `document_front` … `document_owner`, or `video`.
    pub name: String,
    pub kind: MediaKind,
    /// Bytes that will be queued.
    pub size: u64,
    pub content: Content,
    /// What decoding found: an image's width and height, the video's container, codec, size
    /// and duration (recorded in the capture manifest).
    pub media: Value,
}

impl ArtifactSource {
    /// A reader over exactly what will be queued.
    pub fn reader(&self) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        Ok(match &self.content {
            Content::Bytes(b) => Box::new(b.as_slice()),
            Content::File(f) => {
                let mut f = f;
                f.rewind()?;
                Box::new(f)
            }
            Content::Sealed(f, key) => {
                let mut f = f;
                f.rewind()?;
                Box::new(key.unseal(f))
            }
        })
    }
}

/// How a manifest is read beyond its own content.
#[derive(Debug, Clone, Copy)]
pub struct ManifestOptions<'a> {
    /// `--allow-outside`: artifact paths may lead out of the manifest's folder.
    pub allow_outside: bool,
    pub video: &'a dyn VideoProber,
    /// The server generation it is for: the new Optimizer takes `similarity_level` only as the
    /// integer its schema declares; the old one also takes `low|medium|high`.
    pub generation: Generation,
    /// Files the API's intake sealed on the disk, with their keys (`None`: nothing is sealed).
    pub sealed: Option<&'a SealedFiles>,
}

impl std::fmt::Debug for dyn VideoProber + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VideoProber")
    }
}

/// A validated enrollment, ready to be queued.
#[derive(Debug)]
pub struct Enrollment {
    pub pii: Pii,
    pub images: Vec<ArtifactSource>,
    pub video: ArtifactSource,
    /// The kiosk's capture metadata per artifact (camera, mode, timestamps, quality scores and
    /// verdicts), as given; it goes into the signed capture manifest, never to the API as such.
    pub capture: Map<String, Value>,
    /// Who made each claim about the customer (each security check, the similarity level):
    /// `operator` or `software:NAME`; empty when the manifest does not say. Recorded in the
    /// signed capture manifest and the audit trail, never sent to the server.
    pub claims_source: Map<String, Value>,
    /// The video's probe, possibly still running: [`Enrollment::video_media`] awaits it.
    pub video_check: VideoCheck,
}

impl Enrollment {
    /// The video's facts (container, codec, size, duration) once its probe passed, waiting for
    /// it if it is still running; the violation when the video is refused. The queue asks
    /// before it commits: nothing is acknowledged before the video is known to play.
    pub fn video_media(&self) -> Result<Value, EvidenceError> {
        Ok(self.video_check.wait()?.unwrap_or_else(|| self.video.media.clone()))
    }
}

/// Reads and validates the manifest at `path`; artifact paths are relative to its directory.
pub fn validate_manifest(
    path: &Path,
    limits: &EvidenceLimits,
    options: ManifestOptions<'_>,
) -> Result<Enrollment, EvidenceError> {
    let bytes = read_manifest(path).map_err(|error| EvidenceError::ReadManifest { path: path.to_owned(), error })?;
    let value = strict_json::parse(&bytes).map_err(EvidenceError::Json)?;
    let scope = Scope::for_manifest(path, options.allow_outside)
        .map_err(|error| EvidenceError::ReadManifest { path: path.to_owned(), error })?;
    let mut c = Checker {
        violations: Vec::new(),
        max_image_pixels: limits.max_image_pixels,
        scope,
        prober: options.video,
        sealed: options.sealed,
    };
    strict_json::check_strings(&value, "", &mut c.violations);
    validate_value(&value, c, limits, options.generation)
}

/// Collects violations; `take_*` helpers record one and return `None` on a bad value.
struct Checker<'a> {
    violations: Vec<Violation>,
    /// `evidence.max_image_megapixels`, in pixels.
    max_image_pixels: u64,
    scope: Scope,
    prober: &'a dyn VideoProber,
    sealed: Option<&'a SealedFiles>,
}

impl Checker<'_> {
    fn fail(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.violations.push(Violation { field: field.into(), rule: rule.into() });
    }

    fn object<'a>(&mut self, v: Option<&'a Value>, field: &str) -> Option<&'a Map<String, Value>> {
        match v {
            None => self.fail(field, "is required"),
            Some(Value::Object(m)) => return Some(m),
            Some(_) => self.fail(field, "must be a JSON object"),
        }
        None
    }

    fn string(&mut self, map: &Map<String, Value>, key: &str, prefix: &str, required: bool) -> Option<String> {
        let field = format!("{prefix}.{key}");
        match map.get(key) {
            None if required => self.fail(field, "is required"),
            None => {}
            Some(Value::String(s)) if s.trim().is_empty() && required => self.fail(field, "must not be empty"),
            Some(Value::String(s)) => return Some(s.clone()),
            Some(_) => self.fail(field, "must be a string"),
        }
        None
    }

    fn reject_unknown(&mut self, map: &Map<String, Value>, allowed: &[&str], prefix: &str) {
        for key in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
            let field = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            self.fail(field, format!("unknown key (allowed: {})", allowed.join(", ")));
        }
    }

    /// Opens `rel` once within the scope and checks its size; the content is checked later
    /// ([`Checker::contents`]), all artifacts at once.
    fn open_artifact(&mut self, field: &str, rel: Option<&Value>, limit: u64) -> Option<Opened> {
        let rel = match rel {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(_) => {
                self.fail(field, "must be a file path (string)");
                return None;
            }
            None => {
                self.fail(field, "is required");
                return None;
            }
        };
        let (file, size) = match self.scope.open(rel) {
            Ok(opened) => opened,
            Err(rule) => {
                self.fail(field, rule);
                return None;
            }
        };
        let key = self.sealed.and_then(|s| s.key_for(rel));
        let size = match &key {
            None => size,
            Some(key) => match key.clear_len(&file) {
                Ok(size) => size,
                Err(e) => {
                    self.fail(field, format!("cannot be read: {e}"));
                    return None;
                }
            },
        };
        if size > limit {
            self.fail(field, format!("is {size} bytes, over the limit of {limit} bytes"));
            return None;
        }
        Some(Opened { field: field.to_owned(), file, key, size, limit })
    }

    /// Checks the content of every opened artifact: images are cleaned and decoded and the
    /// video's probe started, side by side (decoding four large images and starting the probe
    /// one after the other would make `enroll` wait for each in turn). Violations are recorded
    /// in field order; the probe's comes with its verdict.
    fn contents(
        &mut self,
        images: Vec<Opened>,
        video: Option<Opened>,
    ) -> (Vec<ArtifactSource>, Option<(ArtifactSource, PendingProbe)>) {
        let name_of = |field: &str| field.rsplit('.').next().unwrap_or(field).to_owned();
        let (prober, max_pixels) = (self.prober, self.max_image_pixels);
        let (image_results, video_result) = std::thread::scope(|scope| {
            let video = video.map(|mut v| {
                scope.spawn(move || {
                    let result = video_content(prober, &mut v.file, v.key, v.size);
                    (v.field, result)
                })
            });
            let images: Vec<_> = images
                .into_iter()
                .map(|o| {
                    scope.spawn(move || {
                        let slot = name_of(&o.field);
                        let result = image(&o.file, o.key.as_deref(), o.size, o.limit, max_pixels, &slot);
                        (o.field, result)
                    })
                })
                .collect();
            let images: Vec<_> = images.into_iter().map(|h| h.join().expect("an image check panicked")).collect();
            (images, video.map(|h| h.join().expect("the video check panicked")))
        });
        let mut done = Vec::new();
        for (field, result) in image_results {
            match result {
                Ok((kind, content, size, media)) => {
                    done.push(ArtifactSource { name: name_of(&field), kind, size, content, media })
                }
                Err(rule) => self.fail(field, rule),
            }
        }
        let video_source = match video_result {
            Some((field, Ok((kind, content, size, probe)))) => {
                Some((ArtifactSource { name: name_of(&field), kind, size, content, media: Value::Null }, probe))
            }
            Some((field, Err(rule))) => {
                self.fail(field, rule);
                None
            }
            None => None,
        };
        (done, video_source)
    }
}

/// A checked artifact's kind, queued content, queued size and decoded facts, or the rule broken.
type Checked = Result<(MediaKind, Content, u64, Value), String>;

/// An artifact opened and within its size limit, its content not yet checked.
struct Opened {
    field: String,
    file: File,
    /// Its key, if the intake sealed it.
    key: Option<Arc<SpillKey>>,
    size: u64,
    limit: u64,
}

/// Sniffs the video from its handle and starts its probe.
fn video_content(
    prober: &dyn VideoProber,
    file: &mut File,
    key: Option<Arc<SpillKey>>,
    size: u64,
) -> Result<(MediaKind, Content, u64, PendingProbe), String> {
    let sniffed = match &key {
        Some(key) => sniff_video(&mut key.unseal(&*file)),
        None => sniff_video(file),
    };
    let Some(kind) = sniffed.map_err(|e| format!("cannot be read: {e}"))? else {
        return Err("must be an MP4 file (ISO-BMFF starting with an ftyp box)".into());
    };
    let probe = prober.start(file, key.as_deref())?;
    let mut file = file.try_clone().map_err(|e| format!("cannot be read: {e}"))?;
    file.rewind().map_err(|e| format!("cannot be read: {e}"))?;
    let content = match key {
        Some(key) => Content::Sealed(file, key),
        None => Content::File(file),
    };
    Ok((kind, content, size, probe))
}

/// Reads an image (at most `limit` bytes, from its handle), cleans and decodes it.
fn image(file: &File, key: Option<&SpillKey>, size: u64, limit: u64, max_pixels: u64, slot: &str) -> Checked {
    // Sized once from the handle's size: a buffer grown by doubling is several allocations and
    // copies, each taking the process's memory-map lock from the threads beside it.
    let mut bytes = Vec::with_capacity(size.min(limit) as usize + 1);
    let reader: Box<dyn Read + '_> = match key {
        Some(key) => Box::new(key.unseal(file)),
        None => Box::new(file),
    };
    // The size was checked on the handle, but a growing file must not take more than the limit.
    reader.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("grew over the limit of {limit} bytes while being read"));
    }
    let kind = sniff_image(&mut bytes.as_slice())
        .ok()
        .flatten()
        .ok_or("must be a JPEG or PNG image (checked by content, not extension)")?;
    let clean = media::clean_image(&bytes, kind, slot, max_pixels)?;
    let size = clean.bytes.len() as u64;
    let media = serde_json::json!({ "width": clean.width, "height": clean.height });
    Ok((kind, Content::Bytes(clean.bytes), size, media))
}

fn validate_value(
    value: &Value,
    mut c: Checker<'_>,
    limits: &EvidenceLimits,
    generation: Generation,
) -> Result<Enrollment, EvidenceError> {
    let Some(root) = c.object(Some(value), "manifest") else {
        return Err(EvidenceError::Invalid(c.violations));
    };
    c.reject_unknown(root, &TOP_LEVEL_KEYS, "");

    let customer = c.object(root.get("customer"), "customer").and_then(|m| {
        c.reject_unknown(m, &["mobile_phone_number", "email"], "customer");
        let phone = c.string(m, "mobile_phone_number", "customer", true);
        let email = c.string(m, "email", "customer", true);
        check_phone(&mut c, "customer.mobile_phone_number", phone.as_deref());
        check_email(&mut c, "customer.email", email.as_deref());
        Some(Customer { mobile_phone_number: phone?, email: email? })
    });

    // `acceptance` is customizable: any object, passed through unchanged.
    let acceptance = c.object(root.get("acceptance"), "acceptance").cloned();

    let ocr_data = c.object(root.get("ocr_data"), "ocr_data").cloned();
    if let Some(ocr) = &ocr_data {
        for key in ["given_name", "surname_1", "serial_number"] {
            c.string(ocr, key, "ocr_data", true);
        }
        for key in ["surname_2", "mobile_phone_number", "email"] {
            c.string(ocr, key, "ocr_data", false);
        }
        if let Some(t) = c.string(ocr, "id_document_type", "ocr_data", false) {
            if !DOCUMENT_TYPES.contains(&t.as_str()) {
                c.fail("ocr_data.id_document_type", format!("must be one of {}, not {t:?}", DOCUMENT_TYPES.join(", ")));
            }
        }
        if let Some(country) = c.string(ocr, "id_document_country", "ocr_data", false) {
            if !countries::is_assigned(&country) {
                c.fail(
                    "ocr_data.id_document_country",
                    format!("must be an ISO 3166-1 alpha-2 code such as ES, not {country:?}"),
                );
            }
        }
        let phone = ocr.get("mobile_phone_number").and_then(Value::as_str);
        check_phone(&mut c, "ocr_data.mobile_phone_number", phone);
        check_email(&mut c, "ocr_data.email", ocr.get("email").and_then(Value::as_str));
    }

    let security_checks = match root.get("security_checks") {
        None => Some(Map::new()),
        v => c.object(v, "security_checks").cloned(),
    };
    if let Some(checks) = &security_checks {
        for key in KNOWN_CHECKS {
            if checks.get(key).is_some_and(|v| !v.is_boolean()) {
                c.fail(format!("security_checks.{key}"), "must be a boolean");
            }
        }
    }

    let similarity_level = root.get("similarity_level").cloned();
    match &similarity_level {
        None => c.fail("similarity_level", "is required"),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 100) => {}
        // Never turned into an invented number: the word goes to a server that takes words.
        Some(Value::String(s)) if ["low", "medium", "high"].contains(&s.as_str()) => {
            if generation == Generation::New {
                c.fail(
                    "similarity_level",
                    format!(
                        "must be an integer from 0 to 100 for the new Optimizer (oneshot.layout = \"current\"), \
                         whose schema refuses words such as {s:?}"
                    ),
                );
            }
        }
        Some(_) => {
            c.fail("similarity_level", "must be an integer from 0 to 100 or one of \"low\", \"medium\", \"high\"")
        }
    }

    let mut images = Vec::new();
    if let Some(map) = c.object(root.get("images"), "images") {
        c.reject_unknown(map, &IMAGE_NAMES, "images");
        for slot in Slot::ALL {
            let name = slot.as_str();
            let field = format!("images.{name}");
            // A passport has no rear side: only the rear may be missing.
            if map.get(name).is_none() && !slot.required() {
                continue;
            }
            if let Some(a) = c.open_artifact(&field, map.get(name), limits.max_image_bytes) {
                images.push(a);
            }
        }
    }
    let video = c.open_artifact("video", root.get("video"), limits.max_video_bytes);
    let (images, video) = c.contents(images, video);
    // Where the video's verdict goes among the violations, should the manifest be refused.
    let video_at = c.violations.len();

    let capture = match root.get("capture") {
        None => Some(Map::new()),
        v => c.object(v, "capture").cloned(),
    };
    if let Some(capture) = &capture {
        c.reject_unknown(capture, &CAPTURED, "capture");
        for (key, value) in capture {
            if !value.is_object() {
                c.fail(format!("capture.{key}"), "must be a JSON object (camera, mode, times, scores, verdict)");
            }
        }
    }

    let claims_source = claims_source(&mut c, root.get("claims_source"), security_checks.as_ref());

    match (customer, acceptance, ocr_data, security_checks, similarity_level, video, capture) {
        (
            Some(customer),
            Some(acceptance),
            Some(ocr_data),
            Some(security_checks),
            Some(similarity_level),
            Some((video, probe)),
            Some(capture),
        ) if c.violations.is_empty() => Ok(Enrollment {
            pii: Pii { customer, acceptance, ocr_data, security_checks, similarity_level },
            images,
            video_check: VideoCheck::running("video".into(), probe),
            video,
            capture,
            claims_source,
        }),
        (.., video, _) => {
            // Refused anyway: the probe's verdict still belongs in the list, in field order.
            if let Some(Err(rule)) = video.map(|(_, probe)| probe.finish()) {
                c.violations.insert(video_at, Violation { field: "video".into(), rule });
            }
            Err(EvidenceError::Invalid(c.violations))
        }
    }
}

/// `claims_source`, optional: who made each claim. When given, it names the source of every
/// security check given and of the similarity level, each `operator` or `software:NAME`, and
/// nothing else: a claim with no stated source is not accepted beside ones that have one.
fn claims_source(c: &mut Checker, value: Option<&Value>, checks: Option<&Map<String, Value>>) -> Map<String, Value> {
    let Some(value) = value else { return Map::new() };
    let Some(sources) = c.object(Some(value), "claims_source").cloned() else { return Map::new() };
    let claims: Vec<String> =
        checks.into_iter().flat_map(|m| m.keys().cloned()).chain(["similarity_level".to_owned()]).collect();
    c.reject_unknown(&sources, &claims.iter().map(String::as_str).collect::<Vec<_>>(), "claims_source");
    for claim in &claims {
        let field = format!("claims_source.{claim}");
        match sources.get(claim) {
            None => c.fail(field, "is required: say who made this claim (\"operator\" or \"software:NAME\")"),
            Some(Value::String(s)) if s == OPERATOR => {}
            Some(Value::String(s))
                if s.strip_prefix(SOFTWARE_PREFIX).is_some_and(|name| {
                    !name.trim().is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control)
                }) => {}
            Some(_) => c.fail(field, "must be \"operator\" or \"software:NAME\" (a name of 1 to 100 characters)"),
        }
    }
    sources
}

/// E.164: a plus sign, a non-zero first digit, at most 15 digits in all (at least 8 here, as no
/// mobile number is shorter).
fn check_phone(c: &mut Checker, field: &str, phone: Option<&str>) {
    let Some(p) = phone else { return };
    let digits = p.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if !ok {
        c.fail(field, format!("must be an E.164 number such as +34699999999, not {p:?}"));
    }
}

/// A practical address check: one `@`, a non-empty local part, a dotted domain of sane labels.
fn check_email(c: &mut Checker, field: &str, email: Option<&str>) {
    let Some(e) = email else { return };
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !local.contains(|ch: char| ch.is_whitespace() || ch == '@')
                && domain.contains('.')
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|ch| ch.is_alphanumeric() || ch == '-')
                })
        });
    if !ok {
        c.fail(field, format!("must be an email address such as ana@example.com, not {e:?}"));
    }
}
