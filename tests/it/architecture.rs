//! The README's architecture invariants, checked against the code (after rust-analyzer's
//! `tidy` tests): dependencies point one way, and the capture helper links no queue, HTTP client
//! or sandbox. A change that breaks one fails here with the file and the line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::assert_exit;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The agent's modules from the bottom up: a module may import only from lower layers (and the
/// shared crates `kiosk_common`, `oneshot_protocol`). Modules of one layer do not import each
/// other.
const LAYERS: &[&[&str]] = &[
    &["fsutil", "harden", "faults", "helper"],
    &["config", "crypto", "spill", "device_key"],
    &["evidence"],
    &["queue"],
    &["oneshot"],
    &["sync", "failure", "listener"],
    &["flow", "progress", "webhook", "demo"],
    &["api"],
    &["daemon"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The lines of code of a file: comments left out, and unit tests (`#[cfg(test)]` modules and
/// `tests.rs` files), which may reach anywhere (a test of the webhook receiver builds the
/// sandbox's payloads).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((i + 1, line.to_owned()));
    }
    out
}

/// The top-level module a file of `src/` belongs to.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(Path::new(ROOT).join("src")).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The modules a line names as `crate::<module>`.
fn crate_paths(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .filter(|(i, _)| !line[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, m)| line[i + m.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .collect()
}

#[test]
fn the_agents_modules_import_only_from_lower_layers() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in rust_files(&Path::new(ROOT).join("src")) {
        let module = module_of(&file);
        let Some(own) = layer_of(&module) else {
            // lib.rs and main.rs sit above everything.
            assert!(["lib", "main"].contains(&module.as_str()), "{} is in no layer: add it to LAYERS", file.display());
            continue;
        };
        for (n, line) in code_lines(&file) {
            for target in crate_paths(&line) {
                if target == module {
                    continue;
                }
                checked += 1;
                match layer_of(&target) {
                    Some(l) if l < own => {}
                    Some(_) => {
                        wrong.push(format!("{}:{n}: {module} imports {target}: {}", file.display(), line.trim()))
                    }
                    None => wrong.push(format!("{}:{n}: {target} is in no layer", file.display())),
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} imports found: is the parser still reading `crate::` paths?");
    assert!(wrong.is_empty(), "imports that run up or sideways:\n{}", wrong.join("\n"));
}

/// A crate or type a part of the code must never name.
fn never_names(dirs: &[&str], needle: &str, why: &str) {
    let mut found = Vec::new();
    for dir in dirs {
        let path = Path::new(ROOT).join(dir);
        let files = if path.is_dir() { rust_files(&path) } else { vec![path] };
        for file in files {
            for (n, line) in code_lines(&file) {
                if line.contains(needle) {
                    found.push(format!("{}:{n}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{why}; found `{needle}`:\n{}", found.join("\n"));
}

#[test]
fn the_lower_layers_know_no_http_client_and_the_worker_no_sandbox() {
    never_names(
        &["src/config", "src/queue", "src/evidence", "src/crypto.rs"],
        "reqwest",
        "config, queue and evidence know no HTTP client",
    );
    never_names(
        &["src/queue", "src/sync", "src/oneshot", "src/api", "src/daemon"],
        "kiosk_sandbox",
        "the worker and the daemon never use the sandbox",
    );
    never_names(
        &["src/sync", "src/oneshot", "src/api", "src/daemon", "src/flow.rs", "src/evidence"],
        "rusqlite",
        "only the queue speaks SQL",
    );
    never_names(
        &["src/queue", "src/oneshot", "src/sync", "src/evidence", "src/config"],
        "println!",
        "only the CLI and the API's wire types write for people",
    );
}

/// The crates a package depends on (normal dependencies, transitively), by name.
fn dependency_tree(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-e", "normal", "--prefix", "none", "-p", package])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert_exit(&out, 0, &format!("cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr)));
    String::from_utf8(out.stdout).unwrap()
}

fn depends_on(tree: &str, name: &str) -> bool {
    tree.lines().any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn the_capture_helper_links_no_queue_client_or_sandbox_and_only_it_links_capture() {
    let helper = dependency_tree("kiosk-agent-capture");
    assert!(depends_on(&helper, "kiosk-capture") && depends_on(&helper, "kiosk-common"), "{helper}");
    for crate_name in ["kiosk-agent", "rusqlite", "reqwest", "kiosk-sandbox"] {
        assert!(!depends_on(&helper, crate_name), "the capture helper depends on {crate_name}:\n{helper}");
    }
    for package in ["kiosk-agent", "kiosk-sandbox", "kiosk-common", "oneshot-protocol"] {
        let tree = dependency_tree(package);
        assert!(!depends_on(&tree, "kiosk-capture"), "{package} links the capture crate (FFmpeg, V4L2)");
        assert!(!depends_on(&tree, "ffmpeg-next"), "{package} links FFmpeg");
    }
    let common = dependency_tree("kiosk-common");
    for ours in ["kiosk-agent", "kiosk-capture", "kiosk-sandbox", "oneshot-protocol"] {
        assert!(!depends_on(&common, ours), "kiosk-common depends on {ours}: it must stay the bottom layer");
    }
}

/// The README's route table is checked against `GET /v1/openapi.json`'s document (derived
/// from the handlers, and checked against the router's own table): every route is there, with
/// its method.
#[test]
fn the_readme_lists_every_api_route() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let table: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    let doc = kiosk_agent::api::openapi_document();
    let routes: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    assert!(routes.len() >= kiosk_agent::api::ROUTES.len(), "{routes:?}");
    let mut missing = Vec::new();
    for (method, path) in &routes {
        let path = path.as_str();
        if ["/", "/page.js", "/page.css"].contains(&path) {
            continue; // the page's own files, described with the page
        }
        let wanted = format!("{} {path}", method.to_uppercase());
        if !table.iter().any(|l| l.contains(&wanted)) {
            missing.push(wanted);
        }
    }
    assert!(missing.is_empty(), "routes the README's table does not list: {missing:?}");
}

/// The README's operation table is checked against `oneshot_protocol::Operation`: every
/// operation's key and each generation's default path (without its query string) are there.
#[test]
fn the_readme_lists_every_operations_paths() {
    use oneshot_protocol::{Generation, Operation};
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let mut missing = Vec::new();
    for op in Operation::ALL {
        let first_cell = |l: &str| l.trim_start_matches("| ").split(" | ").next().unwrap_or_default().to_owned();
        let key = format!("`{}`", op.key());
        let Some(row) = readme.lines().find(|l| l.starts_with("| ") && first_cell(l).contains(&key)) else {
            missing.push(format!("{}: no row", op.key()));
            continue;
        };
        for generation in [Generation::New, Generation::Old] {
            match op.default_path(generation) {
                Some(path) if op != Operation::Hello || generation == Generation::Old => {
                    let bare = path.split('?').next().unwrap();
                    if !row.contains(bare) {
                        missing.push(format!("{} ({}): {bare}", op.key(), generation.layout_name()));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(missing.is_empty(), "the README's operation table lacks: {missing:?}");
}

/// The README's contents list every section, in order.
#[test]
fn the_readmes_contents_list_every_section() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let sections: Vec<&str> =
        readme.lines().filter_map(|l| l.strip_prefix("## ")).filter(|h| *h != "Contents").collect();
    let contents: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "## Contents")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("- [").and_then(|l| l.split("](").next()))
        .collect();
    assert_eq!(contents, sections, "the contents and the sections differ");
}
