//! Path templates of the One-Shot operations: the generation's defaults
//! ([`Operation::default_path`]) with per-operation overrides from `[oneshot.paths]`.
//!
//! Templates are relative to `oneshot.base_url` and may use `{request_pk}`, `{videoid_pk}` and
//! (for documents) `{uid}`; a query string is allowed (the new Optimizer selects the signed or
//! the original document with `?document_type=`). An empty template means the generation has no
//! such operation (the new Optimizer has no separate validate step).

use std::collections::BTreeMap;

use oneshot_protocol::{Generation, Operation};

/// Path templates of the One-Shot operations, one per [`Operation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths(BTreeMap<Operation, String>);

impl Paths {
    /// The default templates of a generation (`docs/protocol.md`, operation by operation).
    pub fn for_generation(generation: Generation) -> Self {
        Paths(Operation::ALL.into_iter().map(|op| (op, op.default_path(generation).unwrap_or("").to_owned())).collect())
    }

    /// The template of `op`; empty when the server has no such operation.
    pub fn get(&self, op: Operation) -> &str {
        self.0.get(&op).map(String::as_str).unwrap_or("")
    }
}

impl std::ops::Index<Operation> for Paths {
    type Output = str;

    fn index(&self, op: Operation) -> &str {
        self.get(op)
    }
}

/// The generation's templates with the configured overrides; each bad one is a problem on its key.
pub(super) fn validate(
    generation: Generation,
    raw: Option<BTreeMap<String, String>>,
    problem: &mut dyn FnMut(&str, String),
) -> Paths {
    let mut paths = Paths::for_generation(generation);
    for (key, value) in raw.unwrap_or_default() {
        let op = match key.parse::<Operation>() {
            Ok(op) => op,
            Err(e) => {
                problem(&format!("oneshot.paths.{key}"), e.to_string());
                continue;
            }
        };
        match check_template(&value) {
            Ok(()) => {
                paths.0.insert(op, value);
            }
            Err(msg) => problem(&format!("oneshot.paths.{key}"), msg),
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
