//! `GET /v1/openapi.json`: the API described for a client generator. The routes come from
//! [`super::ROUTES`] (the router is checked against that list); this module adds what each one
//! takes (body, query, path parameters) and every answer it can give, errors included, with the
//! shared error shape `{code, message, field?}` ([`super::ApiError`]).

use serde_json::{json, Map, Value};

/// What a route takes and answers, beyond its line in `ROUTES`.
struct Spec {
    /// The request body: its media type and schema.
    body: Option<(&'static str, Value)>,
    /// Query parameters: name, description.
    query: &'static [(&'static str, &'static str)],
    /// The success answer: status, description, media type and schema.
    ok: (u16, &'static str, &'static str, Value),
    /// The errors this route itself can answer (the guard's and the token's are added to all).
    errors: &'static [(u16, &'static str)],
}

fn object(props: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let mut schema = json!({"type": "object", "properties": properties});
    // OpenAPI 3.0: `required`, when given, lists at least one name.
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn string() -> Value {
    json!({"type": "string"})
}

fn any_object() -> Value {
    json!({"type": "object", "additionalProperties": true})
}

const JSON: &str = "application/json";

fn spec(method: &str, path: &str) -> Spec {
    let plain = |ok: Value| Spec { body: None, query: &[], ok: (200, "OK", JSON, ok), errors: &[] };
    let flow_errors: &'static [(u16, &'static str)] = &[
        (400, "a field breaks a rule (named in `field`)"),
        (404, "no such enrollment"),
        (409, "refused: wrong state, a raw request pk, or the server refused the step (its words)"),
        (502, "the One-Shot server could not be reached or answered in error"),
    ];
    match (method, path) {
        ("get", "/") | ("get", "/page.js") | ("get", "/page.css") => {
            Spec { body: None, query: &[], ok: (200, "the page's file", "text/plain", string()), errors: &[] }
        }
        ("get", "/healthz") => Spec {
            body: None,
            query: &[],
            ok: (200, "alive and moving", JSON, object(&[("status", string())], &["status"])),
            errors: &[(503, "stalled, or the disk is at storage.min_free_bytes: the reasons")],
        },
        ("post", "/v1/session") => Spec {
            body: Some((JSON, object(&[("token", string())], &["token"]))),
            query: &[],
            ok: (
                200,
                "the session cookie is set",
                JSON,
                object(&[("session", string()), ("idle_secs", json!({"type": "integer"}))], &["session"]),
            ),
            errors: &[(400, "no token in the body"), (401, "wrong token"), (429, "too many wrong tokens: Retry-After")],
        },
        ("delete", "/v1/session") => Spec {
            body: None,
            query: &[],
            ok: (200, "logged out (the cookie cleared)", JSON, object(&[("session", string())], &["session"])),
            errors: &[],
        },
        ("get", "/v1/enrollments") => Spec {
            query: &[("state", "only enrollments in this state")],
            ..plain(json!({"type": "array", "items": any_object()}))
        },
        ("post", "/v1/enrollments") => Spec {
            body: Some((
                JSON,
                object(
                    &[
                        ("customer", any_object()),
                        ("acceptance", any_object()),
                        ("ocr_data", any_object()),
                        ("security_checks", any_object()),
                        (
                            "similarity_level",
                            json!({"oneOf": [{"type": "integer", "minimum": 0, "maximum": 100}, {"type": "string", "enum": ["low", "medium", "high"]}]}),
                        ),
                        ("images", any_object()),
                        ("video", any_object()),
                    ],
                    &["customer", "images", "video"],
                ),
            )),
            query: &[],
            ok: (202, "durable in the queue", JSON, object(&[("id", string())], &["id"])),
            errors: &[
                (400, "the manifest breaks rules (each named)"),
                (404, "a capture or recording id that is not (or no longer) kept"),
                (413, "a body or part over its limit"),
                (507, "no space left on the data directory"),
            ],
        },
        ("post", "/v1/enrollments/{id}/retry") => {
            Spec { errors: &[(404, "no such enrollment"), (409, "not failed")], ..plain(any_object()) }
        }
        ("post", "/v1/enrollments/{id}/refuse") => Spec {
            body: Some((JSON, object(&[("reason", string())], &["reason"]))),
            errors: flow_errors,
            ..plain(any_object())
        },
        ("post", "/v1/enrollments/{id}/correct") => Spec {
            body: Some((
                JSON,
                object(
                    &[
                        ("given_name", string()),
                        ("surname_1", string()),
                        ("surname_2", string()),
                        ("birth_date", json!({"type": "string", "pattern": "^[0-9]{2}/[0-9]{2}/[0-9]{4}$"})),
                        ("serial_number", string()),
                        ("country_name", json!({"type": "string", "pattern": "^[A-Z]{2}$"})),
                    ],
                    &[],
                ),
            )),
            errors: flow_errors,
            ..plain(any_object())
        },
        ("post", "/v1/enrollments/{id}/documents") => Spec {
            body: Some(("application/pdf", json!({"type": "string", "format": "binary"}))),
            query: &[("name", "the document's file name")],
            ok: (202, "queued; sent once approved", JSON, any_object()),
            errors: &[
                (400, "not a PDF, or a bad name"),
                (404, "no such enrollment"),
                (409, "refused in this state"),
                (413, "over 64 MiB"),
            ],
        },
        ("post", "/v1/enrollments/{id}/otp") => Spec {
            body: Some((JSON, object(&[("whatsapp", json!({"type": "boolean"}))], &[]))),
            errors: flow_errors,
            ..plain(any_object())
        },
        ("post", "/v1/enrollments/{id}/sign") => Spec {
            body: Some((JSON, object(&[("otp", string())], &["otp"]))),
            errors: flow_errors,
            ..plain(any_object())
        },
        ("post", p) if p.starts_with("/v1/enrollments/{id}/") => Spec { errors: flow_errors, ..plain(any_object()) },
        ("get", "/v1/events") => {
            Spec { body: None, query: &[], ok: (200, "server-sent events", "text/event-stream", string()), errors: &[] }
        }
        ("get", "/v1/cameras/{role}/preview.mjpg") => Spec {
            body: None,
            query: &[],
            ok: (200, "MJPEG", "multipart/x-mixed-replace", string()),
            errors: &[(404, "no such role"), (503, "the capture service or the camera is not there")],
        },
        ("get", "/v1/cameras") => Spec { errors: &[(503, "the capture service is not there")], ..plain(any_object()) },
        ("post", "/v1/captures/still") => Spec {
            body: Some((
                JSON,
                object(
                    &[("role", json!({"type": "string", "enum": ["document", "face"]})), ("kind", string())],
                    &["role"],
                ),
            )),
            errors: &[(400, "a bad role or kind"), (503, "the capture service or the camera is not there")],
            ..plain(any_object())
        },
        ("get", "/v1/captures/{id}/thumbnail.jpg") => Spec {
            body: None,
            query: &[],
            ok: (200, "the still", "image/jpeg", json!({"type": "string", "format": "binary"})),
            errors: &[(404, "no such still (or no longer kept)")],
        },
        ("post", "/v1/recordings") => Spec {
            body: Some((
                JSON,
                object(
                    &[("max_seconds", json!({"type": "number", "minimum": 0, "exclusiveMinimum": true}))],
                    &["max_seconds"],
                ),
            )),
            ok: (201, "recording", JSON, object(&[("id", string())], &["id"])),
            errors: &[(400, "a bad max_seconds"), (503, "the capture service or the camera is not there")],
            query: &[],
        },
        ("post", "/v1/recordings/{id}/stop") => Spec { errors: &[(404, "no such recording")], ..plain(any_object()) },
        ("get", "/metrics") => Spec {
            body: None,
            query: &[],
            ok: (200, "OpenMetrics text", "application/openmetrics-text", string()),
            errors: &[],
        },
        _ => plain(any_object()),
    }
}

fn error_content() -> Value {
    json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}})
}

/// The OpenAPI 3.0 document of every route.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, authed, summary) in super::ROUTES {
        let s = spec(method, path);
        let (code, description, media, schema) = s.ok;
        let mut responses = Map::new();
        responses.insert(code.to_string(), json!({"description": description, "content": {media: {"schema": schema}}}));
        // Every answer passes the guard: a foreign Host, a cross-site request, a state change
        // without its content type or CSRF header.
        responses.insert(
            "421".into(),
            json!({"description": "a Host this API does not answer to", "content": error_content()}),
        );
        responses.insert(
            "403".into(),
            json!({"description": "a cross-site or cross-origin request", "content": error_content()}),
        );
        if *authed {
            responses.insert(
                "401".into(),
                json!({"description": "missing or wrong token or session", "content": error_content()}),
            );
            responses.insert(
                "429".into(),
                json!({"description": "too many wrong tokens: Retry-After", "content": error_content()}),
            );
        }
        for (code, description) in s.errors {
            responses.insert(code.to_string(), json!({"description": description, "content": error_content()}));
        }
        responses.insert("500".into(), json!({"description": "an internal error", "content": error_content()}));
        let mut op = json!({"summary": summary, "operationId": format!("{method}_{}", operation_id(path)), "responses": responses});
        if *authed {
            op["security"] = json!([{"bearer": []}, {"session": []}]);
        }
        let mut parameters = Vec::new();
        for param in ["id", "role"] {
            if path.contains(&format!("{{{param}}}")) {
                parameters.push(json!({"name": param, "in": "path", "required": true, "schema": string()}));
            }
        }
        for (name, description) in s.query {
            parameters.push(
                json!({"name": name, "in": "query", "required": false, "description": description, "schema": string()}),
            );
        }
        if !parameters.is_empty() {
            op["parameters"] = json!(parameters);
        }
        if let Some((media, schema)) = s.body {
            op["requestBody"] = json!({"required": true, "content": {media: {"schema": schema}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "kiosk-agent local API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "kiosk_session"},
            },
            "schemas": {"Error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}},
        },
        "paths": paths,
    })
}

/// A path as the tail of an operation id: `/v1/enrollments/{id}/sign` → `v1_enrollments_id_sign`.
fn operation_id(path: &str) -> String {
    let id: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let id = id.split('_').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("_");
    if id.is_empty() {
        "root".into()
    } else {
        id
    }
}
