//! The new generation played as the FastAPI application it is, checked on its own: 307 to the
//! other spelling of a path, 422 with FastAPI's detail list for a mistyped field, `{"detail": …}`
//! errors, and signature pages counted from 0 against the document's page count.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::control::Peer;
use crate::server::Kill;
use crate::{pdf, router, Shared};
use oneshot_protocol::RequestStatus;

const BASE: &str = "/oneshot/api/v1";

async fn call(state: &Shared, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
    req.extensions_mut().insert(Kill::new());
    req.extensions_mut().insert(Peer("127.0.0.1:1".parse().unwrap()));
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, location, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn shared() -> Shared {
    Shared::default()
}

#[tokio::test]
async fn a_path_with_the_other_slash_is_a_307_whose_location_may_lack_the_mount() {
    let st = shared();
    let (status, location, _) = call(&st, "GET", &format!("{BASE}/contract/45001/"), None).await;
    assert_eq!((status, location.as_deref()), (StatusCode::TEMPORARY_REDIRECT, Some("/api/v1/contract/45001")));
    let (status, location, _) = call(&st, "POST", &format!("{BASE}/sign/45001/"), Some(json!({}))).await;
    assert_eq!((status, location.as_deref()), (StatusCode::TEMPORARY_REDIRECT, Some("/api/v1/sign/45001")));
    let (status, location, _) = call(&st, "GET", &format!("{BASE}/request/45001/"), None).await;
    assert_eq!((status, location.as_deref()), (StatusCode::TEMPORARY_REDIRECT, Some("/api/v1/request/45001")));
    // No route either way: FastAPI's 404.
    let (status, location, body) = call(&st, "GET", &format!("{BASE}/nowhere/at/all"), None).await;
    assert_eq!((status, location, body), (StatusCode::NOT_FOUND, None, json!({"detail": "Not Found"})));
}

#[tokio::test]
async fn a_word_for_similarity_is_a_422_naming_the_field_and_errors_are_detail() {
    let st = shared();
    let create = json!({"mobile_phone_number": "+34600000000", "email": "c@example.com",
                        "registration_authority": "139", "profile": "PFnubeQAFCiudadano"});
    let (status, _, created) = call(&st, "POST", &format!("{BASE}/videoid"), Some(create)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let videoid_pk = created["detail"]["videoid_pk"].as_u64().expect("videoid_pk");
    let jpeg = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]);
    let evidences = |similarity: Value| {
        json!({"acceptance": {}, "videoid_data": {
            "images": {"document_front": jpeg, "document_photo": jpeg, "document_owner": jpeg},
            "ocr_data": {"given_name": "ANA", "surname_1": "GARCIA", "serial_number": "X1"},
            "security_checks": {}, "similarity_level": similarity}})
    };
    let path = format!("{BASE}/videoid/{videoid_pk}/evidences");
    let (status, _, body) = call(&st, "POST", &path, Some(evidences(json!("high")))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = &body["detail"][0];
    assert_eq!(detail["loc"], json!(["body", "videoid_data", "similarity_level"]), "{body}");
    assert!(detail["msg"].is_string() && detail["type"] == "int_parsing", "{body}");
    let (status, _, body) = call(&st, "POST", &path, Some(evidences(json!(87)))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Missing fields: 422, one `missing` entry a field.
    let (status, _, body) = call(&st, "POST", &format!("{BASE}/videoid"), Some(json!({"email": "a@b.c"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let missing: Vec<&str> = body["detail"].as_array().unwrap().iter().map(|d| d["loc"][1].as_str().unwrap()).collect();
    assert_eq!(missing, ["mobile_phone_number", "registration_authority", "profile"], "{body}");
    // Other errors: `{"detail": text}`.
    let (status, _, body) = call(&st, "GET", &format!("{BASE}/contract/99"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string() && body.get("status").is_none(), "{body}");
}

#[tokio::test]
async fn signature_pages_count_from_0_up_to_the_documents_page_count() {
    let st = shared();
    let pk = {
        let mut s = crate::state::lock(&st);
        let pk = s.create("p@example.com", "+34600000001").request_pk;
        s.set_status(pk, RequestStatus::EnrollReady).unwrap();
        s.add_documents(pk, vec![("file".into(), "a.pdf".into(), pdf::text_pdf(&["one page"]))]).unwrap();
        pk
    };
    assert_eq!(pdf::page_count(&pdf::text_pdf(&["x"])), 1);
    let sign = |page: i64, code: &str| json!({"secret": code, "signature": {"appearance": {"position": "10,10,200,60", "page": page}}});
    let code = |st: &Shared| {
        let mut s = crate::state::lock(st);
        s.signing.otp_interval = Some(std::time::Duration::ZERO);
        s.generate_otp(pk).unwrap();
        s.otp(pk).unwrap().to_owned()
    };
    let otp = code(&st);
    let (status, _, body) = call(&st, "POST", &format!("{BASE}/sign/{pk}"), Some(sign(1, &otp))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "page 1 of a one-page document: {body}");
    assert!(body["detail"].as_str().unwrap().contains("numbered from 0"), "{body}");
    let (status, _, body) = call(&st, "POST", &format!("{BASE}/sign/{pk}"), Some(sign(0, &otp))).await;
    assert_eq!(status, StatusCode::OK, "page 0 is the first: {body}");
    let status_now = crate::state::lock(&st).requests[&pk].status.clone();
    assert_eq!(status_now, RequestStatus::Issued, "the RA's model: the certificate is issued");
}
