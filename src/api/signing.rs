//! The signing flow through the API, as the CLI has it (`request ID approve|refuse`,
//! `document ID upload`, `otp ID`, `sign ID`): the same checks, the same calls, the same audit
//! records. A refusal of the request's state or of bad input is 409 or 400 with the reason; a
//! server that cannot be reached is 502.

use std::sync::Arc;

use super::{wire, ApiError, ApiState};
use crate::failure::Failure;
use crate::flow::{net, Flow, IdKind};
use crate::oneshot::{RequestStatus, Unlock};
use crate::sync::blocking;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;

fn flow(s: &ApiState) -> Result<Flow, ApiError> {
    let client = crate::oneshot::Client::new(&s.config.oneshot).map_err(|e| failure(Failure::from(e)))?;
    Ok(Flow { config: (*s.config).clone(), queue: Arc::clone(&s.queue), client, worker: Arc::clone(&s.worker) })
}

/// A CLI failure as an API error: bad input (exit 2) is the caller's, anything else the server's.
fn failure(f: Failure) -> ApiError {
    let message = format!("{:#}", f.error);
    if f.code == 2 {
        ApiError::new(StatusCode::CONFLICT, "refused", message)
    } else {
        ApiError::new(StatusCode::BAD_GATEWAY, "server_error", message)
    }
}

const IN_REVIEW: [RequestStatus; 3] =
    [RequestStatus::VideoReview, RequestStatus::Validated, RequestStatus::VideoIdValidated];

#[utoipa::path(post, path = "/v1/enrollments/{id}/approve", tag = "signing", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    responses(
        (status = 200, description = "approved; queued documents follow", body = wire::Reviewed),
        wire::FlowErrors,
    ))]
pub async fn approve(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<wire::Reviewed>, ApiError> {
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    let rao = flow.rao().map_err(failure)?.clone();
    flow.require(&target, &IN_REVIEW, "approval").await.map_err(failure)?;
    flow.client.approve(&target.ids, &rao).await.map_err(|e| failure(net(e, "approving", true)))?;
    flow.audit(&target, "approved").await.map_err(failure)?;
    let status = flow.status(&target).await.map_err(failure)?;
    let _ = flow.send_documents(&target).await;
    s.worker.wake(crate::sync::events::Why::FlowAction);
    Ok(Json(wire::Reviewed { id, request_pk: target.ids.request_pk, status: status.as_str().to_owned() }))
}

/// `POST /v1/enrollments/{id}/correct {given_name?, surname_1?, …}`: corrects the request's OCR
/// data before approval (`PUT /request/{pk}`); only the fields given change.
#[utoipa::path(post, path = "/v1/enrollments/{id}/correct", tag = "signing", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    request_body = crate::oneshot::OcrCorrection,
    responses(
        (status = 200, description = "corrected on the server", body = wire::Corrected),
        (status = 400, description = "a field breaks its rule (named in `field`)", body = wire::ErrorBody),
        wire::FlowErrors,
    ))]
pub async fn correct(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<wire::Corrected>, ApiError> {
    let correction: crate::oneshot::OcrCorrection = super::typed_body(&body)?;
    correction.check().map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "invalid", e.field, e.rule))?;
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    flow.require(&target, &IN_REVIEW, "a correction").await.map_err(failure)?;
    flow.client.update_request(&target.ids, &correction).await.map_err(|e| failure(net(e, "correcting", true)))?;
    let fields = correction.field_names();
    flow.audit(&target, &format!("corrected {}", fields.join(", "))).await.map_err(failure)?;
    Ok(Json(wire::Corrected {
        id,
        request_pk: target.ids.request_pk,
        corrected: fields.iter().map(|f| f.to_string()).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/enrollments/{id}/refuse", tag = "signing", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    request_body = wire::RefuseRequest,
    responses(
        (status = 200, description = "refused on the server", body = wire::Reviewed),
        (status = 400, description = "no reason, or an unknown field", body = wire::ErrorBody),
        wire::FlowErrors,
    ))]
pub async fn refuse(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<wire::Reviewed>, ApiError> {
    let body: wire::RefuseRequest = super::typed_body(&body)?;
    let reason = body.reason.unwrap_or_default().trim().to_owned();
    if reason.is_empty() {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "reason",
            "is required (the API needs a reason)",
        ));
    }
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    let rao = flow.rao().map_err(failure)?.clone();
    flow.require(&target, &IN_REVIEW, "refusal").await.map_err(failure)?;
    flow.client.refuse(&target.ids, &rao, &reason).await.map_err(|e| failure(net(e, "refusing", true)))?;
    flow.audit(&target, "refused").await.map_err(failure)?;
    let status = flow.status(&target).await.map_err(failure)?;
    Ok(Json(wire::Reviewed { id, request_pk: target.ids.request_pk, status: status.as_str().to_owned() }))
}

/// `POST /v1/enrollments/{id}/documents?name=contract.pdf` with the PDF as the body: queued
/// encrypted, sent once the request is approved.
#[utoipa::path(post, path = "/v1/enrollments/{id}/documents", tag = "signing", security(("bearer" = []), ("session" = [])),
    params(("id" = String, Path, description = "the enrollment's id"), wire::DocumentQuery),
    request_body(content = super::wire::Binary, content_type = "application/pdf", description = "the PDF"),
    responses(
        (status = 202, description = "queued, encrypted; sent once approved", body = wire::DocumentsQueued),
        (status = 400, description = "not a PDF, or a bad name", body = wire::ErrorBody),
        (status = 404, description = "no such enrollment", body = wire::ErrorBody),
        (status = 409, description = "refused in this state", body = wire::ErrorBody),
        (status = 413, description = "over 64 MiB", body = wire::ErrorBody),
    ))]
pub async fn upload_document(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<wire::DocumentQuery>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<wire::DocumentsQueued>), ApiError> {
    let name = q.name.unwrap_or_else(|| "document.pdf".into());
    let safe = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
        && !name.starts_with('.');
    if !safe {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "name",
            "a file name of letters, digits, - _ . and spaces",
        ));
    }
    // Kept in a memory file (never on a disk) until the queue has sealed it; both on the
    // blocking pool.
    let (queue, id2) = (Arc::clone(&s.queue), id.clone());
    let queued = tokio::task::spawn_blocking(move || {
        let (file, path) = crate::fsutil::memory_file_holding("document", &body)
            .map_err(|e| crate::queue::io_err(std::path::Path::new("document"))(e))?;
        let queued = queue.enqueue_named_documents(&id2, &[(path, name)]);
        drop(file);
        queued
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let ids = queued.map_err(|e| match e {
        crate::queue::QueueError::BadDocument { rule, .. } => {
            ApiError::field(StatusCode::BAD_REQUEST, "invalid", "body", rule)
        }
        e => ApiError::from(e),
    })?;
    let id2 = id.clone();
    blocking(&s.queue, move |q| q.audit(Some(&id2), "document queued through the API")).await.ok();
    s.worker.wake(crate::sync::events::Why::FlowAction);
    Ok((StatusCode::ACCEPTED, Json(wire::DocumentsQueued { id, documents: ids })))
}

#[utoipa::path(post, path = "/v1/enrollments/{id}/otp", tag = "signing", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    request_body = wire::OtpRequest,
    responses(
        (status = 200, description = "the OTP is on its way", body = wire::OtpSent),
        (status = 400, description = "an unknown field or a wrong type", body = wire::ErrorBody),
        wire::FlowErrors,
    ))]
pub async fn otp(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<wire::OtpSent>, ApiError> {
    let body: wire::OtpRequest = super::typed_body(&body)?;
    let whatsapp = body.whatsapp.unwrap_or(false);
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    // The server enforces the order of the signing steps itself (412, translated by `net`).
    flow.client
        .generate_otp(&target.ids, whatsapp, s.config.sync.otp_wait)
        .await
        .map_err(|e| failure(net(e, "generating the OTP", true)))?;
    flow.audit(&target, "OTP sent").await.map_err(failure)?;
    Ok(Json(wire::OtpSent { id, sent_by: if whatsapp { "whatsapp" } else { "sms" }.into() }))
}

#[utoipa::path(post, path = "/v1/enrollments/{id}/sign", tag = "signing", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    request_body = wire::SignRequest,
    responses(
        (status = 200, description = "signed", body = wire::Signed),
        (status = 400, description = "no OTP, or an unknown field", body = wire::ErrorBody),
        wire::FlowErrors,
    ))]
pub async fn sign(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<wire::Signed>, ApiError> {
    let body: wire::SignRequest = super::typed_body(&body)?;
    let Some(code) = body.otp.as_deref().filter(|c| !c.trim().is_empty()) else {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid", "otp", "is required"));
    };
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    let uids: Vec<String> = match &target.enrollment {
        Some(e) => {
            let id = e.id.clone();
            blocking(&flow.queue, move |q| q.documents(&id)).await?.iter().filter_map(|d| d.uid.clone()).collect()
        }
        None => Vec::new(),
    };
    if let Some(e) = &target.enrollment {
        let id = e.id.clone();
        blocking(&flow.queue, move |q| q.record_sign_sent(&id)).await?;
    }
    flow.client
        .sign(&target.ids, &Unlock::Otp(code.trim().to_owned()), &s.config.signature, &uids)
        .await
        .map_err(|e| failure(net(e, "signing", false)))?;
    flow.audit(&target, "signed").await.map_err(failure)?;
    let status = flow.status(&target).await.map_err(failure)?;
    Ok(Json(wire::Signed { id, status: status.as_str().to_owned() }))
}

/// A PDF for the operator page, from memory (never written to the kiosk's disk), shown inline
/// by the browser's own viewer. Its CSP runs nothing but, unlike the API's other answers, is
/// not a sandbox (a sandboxed document cannot show a PDF).
fn pdf(bytes: Vec<u8>, name: &str) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse as _;
    // A header value: the file's name as plain ASCII (a document's name comes from the kiosk).
    let name: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).collect();
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CONTENT_DISPOSITION, format!("inline; filename=\"{name}\"")),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'".to_owned()),
        ],
        bytes,
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/enrollments/{id}/contract.pdf", tag = "signing", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    responses(
        (status = 200, description = "the service contract (from the server, through memory)", content_type = "application/pdf", body = wire::Binary),
        wire::FlowErrors,
    ))]
pub async fn contract(State(s): State<ApiState>, Path(id): Path<String>) -> Result<axum::response::Response, ApiError> {
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    flow.require(&target, &[RequestStatus::EnrollReady, RequestStatus::Signed], "the contract")
        .await
        .map_err(failure)?;
    let bytes =
        flow.client.contract_bytes(&target.ids).await.map_err(|e| failure(net(e, "downloading the contract", true)))?;
    Ok(pdf(bytes, "contract.pdf"))
}

#[utoipa::path(get, path = "/v1/enrollments/{id}/documents", tag = "signing", security(("bearer" = []), ("session" = [])), params(("id" = String, Path, description = "the enrollment's id")),
    responses(
        (status = 200, description = "the enrollment's documents, oldest first", body = Vec<wire::Document>),
        wire::FlowErrors,
    ))]
pub async fn documents(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<wire::Document>>, ApiError> {
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    let Some(e) = &target.enrollment else { return Ok(Json(Vec::new())) };
    let eid = e.id.clone();
    let docs = blocking(&flow.queue, move |q| q.documents(&eid)).await?;
    Ok(Json(
        docs.into_iter()
            .map(|d| wire::Document { uid: d.uid, file: d.file, state: format!("{:?}", d.state).to_lowercase() })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/enrollments/{id}/documents/{uid}/signed.pdf", tag = "signing", security(("bearer" = []), ("session" = [])),
    params(("id" = String, Path, description = "the enrollment's id"), ("uid" = String, Path, description = "the document's uid on the server")),
    responses(
        (status = 200, description = "the signed copy (from the server, through memory)", content_type = "application/pdf", body = wire::Binary),
        (status = 404, description = "no such document for this enrollment", body = wire::ErrorBody),
        wire::FlowErrors,
    ))]
pub async fn signed_copy(
    State(s): State<ApiState>,
    Path((id, uid)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    let flow = flow(&s)?;
    let target = flow.target(&id, IdKind::Enrollment).await.map_err(failure)?;
    // Only a document of this enrollment: never a uid the page was not given.
    let known = match &target.enrollment {
        Some(e) => {
            let eid = e.id.clone();
            let docs = blocking(&flow.queue, move |q| q.documents(&eid)).await?;
            docs.into_iter().find(|d| d.uid.as_deref() == Some(uid.as_str()))
        }
        None => None,
    };
    let Some(doc) = known else {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "not_found",
            "uid",
            format!("no document {uid:?} of this enrollment"),
        ));
    };
    let bytes = flow
        .client
        .document_bytes(&target.ids, &uid, true)
        .await
        .map_err(|e| failure(net(e, "downloading the signed document", true)))?;
    Ok(pdf(bytes, &format!("signed-{}", doc.file)))
}
