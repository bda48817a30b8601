//! The capture manifest: for each enrollment, what was captured and queued — the SHA-256, size
//! and decoded properties of every artifact, the kiosk's capture metadata (camera, mode, times,
//! quality scores and verdicts), the agent's version and the device — signed with the device's
//! Ed25519 key. It holds no personal data and is kept after the evidence is erased, so the
//! record of what this device captured outlives the images themselves.

use rusqlite::OptionalExtension as _;
use serde_json::{json, Map, Value};

use crate::device_key::{self, DeviceKey};
use crate::evidence::Enrollment;

/// The manifest's format name, inside the signed bytes.
pub const FORMAT: &str = "kiosk-agent capture manifest v1";

/// A signed manifest as stored: the exact bytes signed, the signature and the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    pub json: String,
    pub signature: String,
    pub public_key: String,
}

impl SignedManifest {
    /// Whether the signature matches the stored bytes.
    pub fn is_valid(&self) -> bool {
        device_key::verify(&self.public_key, self.json.as_bytes(), &self.signature)
    }

    /// The form shown by `queue show` and sent inside `acceptance` when configured.
    pub fn to_value(&self) -> Value {
        json!({
            "manifest": serde_json::from_str::<Value>(&self.json).unwrap_or(Value::Null),
            "signature": self.signature,
            "public_key": self.public_key,
            "algorithm": "Ed25519",
        })
    }
}

/// One queued artifact: name, kind, bytes queued and their SHA-256.
pub type Row<'a> = (&'a str, &'a str, u64, &'a str);

/// Builds and signs the manifest of enrollment `id`.
/// `video_media`: what the video's probe found ([`Enrollment::video_media`]).
pub fn sign(
    id: &str,
    enrollment: &Enrollment,
    video_media: &Value,
    rows: &[Row<'_>],
    queued_at_ms: i64,
    key: &DeviceKey,
) -> SignedManifest {
    let media: Map<String, Value> = enrollment
        .images
        .iter()
        .map(|a| (a.name.clone(), a.media.clone()))
        .chain([(enrollment.video.name.clone(), video_media.clone())])
        .collect();
    let artifacts: Vec<Value> = rows
        .iter()
        .map(|(name, kind, size, sha256)| {
            json!({
                "name": name,
                "kind": kind,
                "size": size,
                "sha256": sha256,
                "media": media.get(*name).cloned().unwrap_or(Value::Null),
                "capture": enrollment.capture.get(*name).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let manifest = json!({
        "format": FORMAT,
        "enrollment": id,
        "device_id": key.device_id(),
        "agent_version": env!("CARGO_PKG_VERSION"),
        "queued_at_ms": queued_at_ms,
        "artifacts": artifacts,
        // Who made each claim about the customer (`{}`: the manifest did not say).
        "claims_source": enrollment.claims_source,
    });
    let json = serde_json::to_string(&manifest).expect("JSON values serialize");
    SignedManifest { signature: key.sign_hex(json.as_bytes()), public_key: key.public_key_hex(), json }
}

/// The key under `acceptance` that carries the manifest when `evidence.send_manifest` is on.
pub const ACCEPTANCE_KEY: &str = "kiosk_capture_manifest";
/// The key under `acceptance` that carries the audit chain's head (`{seq, hash}`) beside the
/// manifest: kept by the RA, out of a local writer's reach, it anchors the chain up to there
/// (`audit verify --anchor SEQ:HASH`).
pub const AUDIT_HEAD_KEY: &str = "kiosk_audit_head";

/// The signed manifest stored for enrollment `id`, if it has one.
pub(super) fn stored(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<SignedManifest>> {
    conn.query_row(
        "SELECT capture_manifest, capture_signature, device_public_key FROM enrollments WHERE id = ?1",
        [id],
        |r| {
            Ok(match (r.get(0)?, r.get(1)?, r.get(2)?) {
                (Some(json), Some(signature), Some(public_key)) => Some(SignedManifest { json, signature, public_key }),
                _ => None,
            })
        },
    )
}

impl super::Queue {
    /// The personal data as sent in the evidences body: with `with_manifest`, `acceptance` (the
    /// API's customizable object) also carries the signed capture manifest under
    /// [`ACCEPTANCE_KEY`].
    pub fn pii_to_send(&self, id: &str, with_manifest: bool) -> Result<crate::evidence::Pii, super::QueueError> {
        let mut pii = self.load_pii(id)?;
        if with_manifest {
            // Only the manifest: not the artifacts and history `show` would read too.
            let conn = self.conn();
            if let Some(m) = stored(&conn, id)? {
                pii.acceptance.insert(ACCEPTANCE_KEY.into(), m.to_value());
            }
            let head: Option<(i64, String)> = conn
                .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((seq, hash)) = head {
                pii.acceptance.insert(AUDIT_HEAD_KEY.into(), json!({"seq": seq, "hash": hash}));
            }
        }
        Ok(pii)
    }
}
