//! Path templates of the One-Shot operations, per server generation, with per-path overrides.
//!
//! Templates are relative to `oneshot.base_url` and may use `{request_pk}`, `{videoid_pk}` and
//! (for documents) `{uid}`; a query string is allowed (the new Optimizer selects the signed or
//! the original document with `?document_type=`). An empty template means the generation has no
//! such operation (the new Optimizer has no separate validate step).

use super::raw::RawPaths;
use super::Layout;

/// Path templates of the One-Shot operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub create: String,
    pub evidences: String,
    pub video: String,
    pub status: String,
    pub hello: String,
    pub approve: String,
    pub validate: String,
    pub refuse: String,
    pub video_download: String,
    pub document_upload: String,
    pub contract: String,
    pub otp: String,
    pub sign: String,
    pub document_signed: String,
    pub document_original: String,
    pub document_delete: String,
    pub documents_delete: String,
}

impl Paths {
    /// The default templates of a layout (`protocol-notes.md`, operation by operation).
    pub fn for_layout(layout: Layout) -> Self {
        let s = |t: &str| t.to_owned();
        match layout {
            Layout::Current => Paths {
                create: s("/videoid"),
                evidences: s("/videoid/{videoid_pk}/evidences"),
                video: s("/videoid/{videoid_pk}/video"),
                status: s("/request/{request_pk}"),
                hello: s("/hello"),
                approve: s("/videoid/{videoid_pk}/approve"),
                validate: String::new(),
                refuse: s("/videoid/{videoid_pk}/refuse"),
                // "Download Videoid Video" exists but its path is not published: assumed.
                video_download: s("/videoid/{videoid_pk}/download/video"),
                document_upload: s("/document/{request_pk}"),
                contract: s("/contract/{request_pk}/"),
                otp: s("/otp/{request_pk}"),
                sign: s("/sign/{request_pk}/"),
                document_signed: s("/document/{request_pk}/{uid}?document_type=signed"),
                document_original: s("/document/{request_pk}/{uid}?document_type=original"),
                document_delete: s("/document/{request_pk}/{uid}"),
                documents_delete: s("/document/{request_pk}"),
            },
            Layout::Legacy => Paths {
                create: s("/videoid"),
                evidences: s("/videoid/{request_pk}/evidences"),
                video: s("/videoid/{request_pk}/evidences/video"),
                status: s("/request/{request_pk}"),
                hello: s("/hello"),
                // Singular in the curl sample, the guide and integrator code; the yaml path says
                // `/requests/`: set `oneshot.paths.approve` for a deployment that follows it.
                approve: s("/request/{request_pk}/approve"),
                validate: s("/videoid/{request_pk}/validate"),
                refuse: s("/videoid/{request_pk}/refuse"),
                video_download: s("/videoid/{request_pk}/download/video"),
                document_upload: s("/document/{request_pk}"),
                contract: s("/document/{request_pk}/contract"),
                otp: s("/otp/{request_pk}"),
                sign: s("/sign/{request_pk}"),
                document_signed: s("/document/{request_pk}/signed/{uid}"),
                document_original: s("/document/{request_pk}/original/{uid}"),
                document_delete: s("/document/{request_pk}/original/{uid}"),
                documents_delete: s("/documents/{request_pk}"),
            },
        }
    }
}

/// The layout's templates with the configured overrides; each bad one is a problem on its key.
pub(super) fn validate(layout: Layout, raw: Option<RawPaths>, problem: &mut dyn FnMut(&str, String)) -> Paths {
    let mut paths = Paths::for_layout(layout);
    let Some(p) = raw else { return paths };
    for (key, value, slot) in [
        ("create", p.create, &mut paths.create),
        ("evidences", p.evidences, &mut paths.evidences),
        ("video", p.video, &mut paths.video),
        ("status", p.status, &mut paths.status),
        ("hello", p.hello, &mut paths.hello),
        ("approve", p.approve, &mut paths.approve),
        ("validate", p.validate, &mut paths.validate),
        ("refuse", p.refuse, &mut paths.refuse),
        ("video_download", p.video_download, &mut paths.video_download),
        ("document_upload", p.document_upload, &mut paths.document_upload),
        ("contract", p.contract, &mut paths.contract),
        ("otp", p.otp, &mut paths.otp),
        ("sign", p.sign, &mut paths.sign),
        ("document_signed", p.document_signed, &mut paths.document_signed),
        ("document_original", p.document_original, &mut paths.document_original),
        ("document_delete", p.document_delete, &mut paths.document_delete),
        ("documents_delete", p.documents_delete, &mut paths.documents_delete),
    ] {
        if let Some(v) = value {
            match check_template(&v) {
                Ok(()) => *slot = v,
                Err(msg) => problem(&format!("oneshot.paths.{key}"), msg),
            }
        }
    }
    paths
}

fn check_template(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    let stripped = path.replace("{request_pk}", "").replace("{videoid_pk}", "").replace("{uid}", "");
    if stripped.contains(['{', '}']) {
        return Err("may only use the placeholders {request_pk}, {videoid_pk} and {uid}".into());
    }
    if path.contains(['#', ' ']) {
        return Err("must not contain '#' or spaces".into());
    }
    Ok(())
}
