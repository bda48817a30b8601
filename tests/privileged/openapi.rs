//! `GET /v1/openapi.json` checked by an OpenAPI validator (openapi-spec-validator, installed by
//! `scripts/setup-debian test`), and for what a client generator needs: every body, query
//! parameter and error answer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/openapi/bin/openapi-spec-validator")
}

pub fn can_run() -> Result<(), String> {
    if validator().exists() {
        Ok(())
    } else {
        Err("no openapi-spec-validator (scripts/setup-debian test installs it)".into())
    }
}

pub fn the_apis_description_passes_a_validator_and_documents_bodies_and_errors() {
    let doc = kiosk_agent::api::openapi_document();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = Command::new(validator()).arg(&file).output().unwrap();
    assert_exit(&out, 0, "openapi-spec-validator");
    for (method, path, authed, _) in kiosk_agent::api::ROUTES {
        let op = &doc["paths"][path][method];
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
        assert!(responses.keys().any(|c| c.starts_with('2')), "{method} {path}: no success answer");
        for code in ["403", "421", "500"] {
            assert!(responses.contains_key(code), "{method} {path}: no {code}");
        }
        if *authed {
            assert!(responses.contains_key("401") && responses.contains_key("429"), "{method} {path}: no 401/429");
        }
        if *method == "post" && !path.ends_with("/stop") && !path.ends_with("/retry") && !path.ends_with("/approve") {
            assert!(op["requestBody"].is_object(), "{method} {path}: its body is not described");
        }
    }
    // The answers the API really gives beyond 200 are there: 202 of an enrollment, 201 of a
    // recording, 413 and 507 of a submission, 409 of a refused step.
    let code = |m: &str, p: &str, c: &str| doc["paths"][p][m]["responses"][c].is_object();
    assert!(code("post", "/v1/enrollments", "202") && code("post", "/v1/enrollments", "413"));
    assert!(code("post", "/v1/enrollments", "507") && code("post", "/v1/recordings", "201"));
    assert!(code("post", "/v1/enrollments/{id}/sign", "409"));
    assert_eq!(doc["paths"]["/v1/enrollments"]["get"]["parameters"][0]["name"], "state");
}
