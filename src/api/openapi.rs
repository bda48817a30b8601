//! `GET /v1/openapi.json`: the API described for a client generator, derived from the handlers
//! themselves. Each handler carries its `#[utoipa::path]` (method, path, body, parameters and
//! every answer it gives, errors included), and the bodies are the wire types it reads and
//! writes ([`super::wire`]), so the description cannot drift from the code. What every route
//! shares is added here once ([`Guarded`]): the guard's 421 and 403, the token's 401 and 429,
//! and 500. A test checks that the document lists exactly [`super::ROUTES`], the router's table.

use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use super::{session, wire};

#[derive(OpenApi)]
#[openapi(
    info(title = "kiosk-agent local API", description = "The kiosk's local control API and operator page (see the README)."),
    paths(
        super::page,
        super::page_script,
        super::page_style,
        super::healthz,
        super::open_session,
        super::close_session,
        super::status,
        super::list_enrollments,
        super::intake::submit,
        super::show_enrollment,
        super::retry_enrollment,
        super::signing::approve,
        super::signing::refuse,
        super::signing::correct,
        super::signing::upload_document,
        super::signing::otp,
        super::signing::sign,
        super::signing::contract,
        super::signing::documents,
        super::signing::signed_copy,
        super::events,
        super::cameras::cameras,
        super::cameras::preview,
        super::cameras::guidance,
        super::cameras::still,
        super::cameras::thumbnail,
        super::cameras::start_recording,
        super::cameras::stop_recording,
        super::cameras::clip,
        super::openapi,
        super::metrics::metrics,
    ),
    components(schemas(wire::ErrorBody, wire::Guidance, wire::GuidanceHint)),
    modifiers(&Guarded),
)]
struct ApiDoc;

/// What every route shares: the security schemes, and the answers of the guard, the token
/// check and an internal failure.
struct Guarded;

impl Modify for Guarded {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                session::COOKIE,
                "the page's session (POST /v1/session)",
            ))),
        );
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                add_shared_answers(op);
            }
        }
    }
}

fn add_shared_answers(op: &mut Operation) {
    let error = |description: &str| {
        let content = Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))));
        RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
    };
    let mut shared = vec![
        ("421", "a Host this API does not answer to"),
        ("403", "a cross-site or cross-origin request, or a state change without its content type or CSRF header"),
        ("500", "an internal error"),
    ];
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        shared.push(("401", "missing or wrong token or session"));
        shared.push(("429", "too many wrong tokens: Retry-After"));
    }
    for (code, description) in shared {
        op.responses.responses.entry(code.to_owned()).or_insert_with(|| error(description));
    }
}

/// The OpenAPI 3.1 document of every route.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document and the router's table list the same routes, with the same token rule.
    #[test]
    fn the_document_lists_exactly_the_routers_routes() {
        let doc = document();
        let mut described = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let authed = op["security"].as_array().is_some_and(|s| !s.is_empty());
                described.push((method.clone(), path.clone(), authed));
            }
        }
        described.sort();
        let mut routed: Vec<_> =
            super::super::ROUTES.iter().map(|(m, p, authed, _)| (m.to_string(), p.to_string(), *authed)).collect();
        routed.sort();
        assert_eq!(described, routed);
    }

    /// Bodies are the wire types: a change to one shows in the document.
    #[test]
    fn bodies_and_answers_come_from_the_wire_types() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for name in
            ["Status", "Enrollment", "EnrollmentDetail", "ErrorBody", "RefuseRequest", "SignRequest", "Accepted"]
        {
            assert!(schemas[name].is_object(), "{name} is not in the components");
        }
        assert_eq!(schemas["SignRequest"]["properties"]["otp"]["type"], serde_json::json!(["string", "null"]));
        let sign = &doc["paths"]["/v1/enrollments/{id}/sign"]["post"];
        assert_eq!(
            sign["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SignRequest"
        );
        assert_eq!(
            sign["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Signed"
        );
        assert!(sign["responses"]["502"].is_object() && sign["responses"]["429"].is_object());
    }
}
