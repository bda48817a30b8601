//! The hostile-input corpus: malformed manifests and files, each refused by `enroll` with exit 2
//! and a message naming the field, nothing queued, nothing left on disk, no panic and no hang.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::*;

/// How a case builds its manifest folder (a copy of the samples) before `enroll` runs.
enum Setup {
    /// Edit the sample manifest.
    Edit(fn(&mut Value)),
    /// Replace the manifest with these bytes.
    Raw(Vec<u8>),
    /// Replace one artifact file with these bytes.
    File(&'static str, Vec<u8>),
    /// Anything else, done to the folder; returns the manifest path to enroll.
    Custom(Box<dyn Fn(&Path) -> PathBuf>),
}

struct Case {
    name: &'static str,
    setup: Setup,
    /// Extra `enroll` arguments.
    args: &'static [&'static str],
    /// Every one of these must appear in the error.
    expect: &'static [&'static str],
}

fn case(name: &'static str, setup: Setup, expect: &'static [&'static str]) -> Case {
    Case { name, setup, args: &[], expect }
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples_dir().join(name)).unwrap()
}

fn sample_manifest() -> Value {
    serde_json::from_slice(&sample("manifest.json")).unwrap()
}

/// The sample manifest with `key` written twice in the object at `path` (as text, since no JSON
/// library can build such a document).
fn duplicated_key() -> Vec<u8> {
    let text = serde_json::to_string(&sample_manifest()).unwrap();
    text.replacen("\"customer\":{", "\"customer\":{\"email\":\"eve@example.com\",", 1).into_bytes()
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "x": inner }))
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, 90])).collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 75).encode(&pixels, w as u16, h as u16, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// A JPEG whose frame header claims `w`×`h` (the rest of the file is a small real image).
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut bytes = jpeg(320, 200);
    let sof = bytes.windows(2).position(|p| p == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

fn fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// Replaces `file` in the folder by what `make` creates at its path.
fn replace(file: &'static str, make: fn(&Path)) -> Setup {
    Setup::Custom(Box::new(move |dir| {
        let path = dir.join(file);
        std::fs::remove_file(&path).unwrap();
        make(&path);
        dir.join("manifest.json")
    }))
}

fn corpus() -> Vec<Case> {
    use Setup::*;
    let front = &["images.document_front"];
    let mut cases = vec![
        // The manifest itself.
        case("empty manifest", Raw(vec![]), &["not valid JSON"]),
        case("truncated object", Raw(b"{\"customer\": {".to_vec()), &["not valid JSON"]),
        case("null", Raw(b"null".to_vec()), &["manifest", "JSON object"]),
        case("array", Raw(b"[]".to_vec()), &["manifest", "JSON object"]),
        case("number", Raw(b"42".to_vec()), &["manifest", "JSON object"]),
        case("string", Raw(b"\"manifest\"".to_vec()), &["manifest", "JSON object"]),
        case("invalid UTF-8", Raw(b"{\"customer\": \"\xff\xfe\"}".to_vec()), &["not valid JSON"]),
        case("raw NUL byte", Raw(b"{\"a\":\0}".to_vec()), &["not valid JSON"]),
        case("byte-order mark", Raw(b"\xEF\xBB\xBF{}".to_vec()), &["not valid JSON"]),
        case("trailing garbage", Raw(b"{} {}".to_vec()), &["not valid JSON"]),
        case("comment", Raw(b"// hi\n{}".to_vec()), &["not valid JSON"]),
        case("NaN literal", Raw(b"{\"similarity_level\": NaN}".to_vec()), &["not valid JSON"]),
        case("single quotes", Raw(b"{'customer': 1}".to_vec()), &["not valid JSON"]),
        case("duplicate key", Raw(duplicated_key()), &["customer.email", "given twice"]),
        case("duplicate top-level key", Raw(b"{\"video\":\"a\",\"video\":\"b\"}".to_vec()), &["video", "given twice"]),
        case(
            "deep nesting",
            Raw(serde_json::to_vec(&json!({ "acceptance": nested(40) })).unwrap()),
            &["acceptance", "nested deeper"],
        ),
        case("very deep arrays", Raw(vec![b'['; 100_000]), &["not valid JSON"]),
        case(
            "over 1 MiB",
            Raw([b"{}".as_slice(), &vec![b' '; 1 << 20]].concat()),
            &["over the limit of 1048576 bytes"],
        ),
        case(
            "manifest is a FIFO",
            Custom(Box::new(|dir| {
                let p = dir.join("fifo.json");
                fifo(&p);
                p
            })),
            &["a FIFO"],
        ),
        case("manifest is /dev/zero", Custom(Box::new(|_| PathBuf::from("/dev/zero"))), &["a character device"]),
        case("manifest is a directory", Custom(Box::new(|dir| dir.to_owned())), &["a directory"]),
        case("manifest is missing", Custom(Box::new(|dir| dir.join("nope.json"))), &["nope.json", "No such file"]),
        // Fields.
        case(
            "customer missing",
            Edit(|m| drop(m.as_object_mut().unwrap().remove("customer"))),
            &["customer", "required"],
        ),
        case("customer is a string", Edit(|m| m["customer"] = json!("Ana")), &["customer", "JSON object"]),
        case("email is a number", Edit(|m| m["customer"]["email"] = json!(7)), &["customer.email", "string"]),
        case("email is empty", Edit(|m| m["customer"]["email"] = json!("")), &["customer.email", "empty"]),
        case(
            "email is huge",
            Edit(|m| m["customer"]["email"] = json!(format!("{}@example.com", "a".repeat(5000)))),
            &["customer.email", "over the limit of 4096"],
        ),
        case(
            "email holds NUL",
            Edit(|m| m["customer"]["email"] = json!("ana\u{0}@example.com")),
            &["customer.email", "control"],
        ),
        case(
            "name holds a newline",
            Edit(|m| m["ocr_data"]["given_name"] = json!("Ana\nRoot")),
            &["ocr_data.given_name", "control"],
        ),
        case(
            "name holds a bidi override",
            Edit(|m| m["ocr_data"]["given_name"] = json!("Ana\u{202E}")),
            &["ocr_data.given_name", "U+202E"],
        ),
        case(
            "name holds an escape",
            Edit(|m| m["ocr_data"]["surname_1"] = json!("\u{1b}[31m")),
            &["ocr_data.surname_1", "control"],
        ),
        case(
            "name is huge",
            Edit(|m| m["ocr_data"]["given_name"] = json!("A".repeat(10_000))),
            &["ocr_data.given_name", "over the limit"],
        ),
        case("long key", Edit(|m| m["acceptance"]["k".repeat(100)] = json!(1)), &["(the key)", "over the limit of 64"]),
        case("acceptance null", Edit(|m| m["acceptance"] = Value::Null), &["acceptance", "JSON object"]),
        case("acceptance array", Edit(|m| m["acceptance"] = json!([])), &["acceptance", "JSON object"]),
        case(
            "ocr_data missing",
            Edit(|m| drop(m.as_object_mut().unwrap().remove("ocr_data"))),
            &["ocr_data", "required"],
        ),
        case("surname is a number", Edit(|m| m["ocr_data"]["surname_1"] = json!(1)), &["ocr_data.surname_1", "string"]),
        case(
            "serial number missing",
            Edit(|m| drop(m["ocr_data"].as_object_mut().unwrap().remove("serial_number"))),
            &["ocr_data.serial_number", "required"],
        ),
        case(
            "lower-case document type",
            Edit(|m| m["ocr_data"]["id_document_type"] = json!("idc")),
            &["ocr_data.id_document_type"],
        ),
        case(
            "unassigned country",
            Edit(|m| m["ocr_data"]["id_document_country"] = json!("ZZ")),
            &["ocr_data.id_document_country"],
        ),
        case(
            "phone with letters",
            Edit(|m| m["customer"]["mobile_phone_number"] = json!("+34abc")),
            &["customer.mobile_phone_number", "E.164"],
        ),
        case(
            "phone too short",
            Edit(|m| m["customer"]["mobile_phone_number"] = json!("+3469")),
            &["customer.mobile_phone_number", "E.164"],
        ),
        case(
            "phone leading zero",
            Edit(|m| m["customer"]["mobile_phone_number"] = json!("+0034699999")),
            &["customer.mobile_phone_number"],
        ),
        case(
            "OCR email invalid",
            Edit(|m| m["ocr_data"]["email"] = json!("a@b")),
            &["ocr_data.email", "email address"],
        ),
        case("checks are a string", Edit(|m| m["security_checks"] = json!("ok")), &["security_checks", "JSON object"]),
        case(
            "check is a string",
            Edit(|m| m["security_checks"]["liveliness"] = json!("true")),
            &["security_checks.liveliness", "boolean"],
        ),
        case(
            "similarity missing",
            Edit(|m| drop(m.as_object_mut().unwrap().remove("similarity_level"))),
            &["similarity_level", "required"],
        ),
        case("similarity null", Edit(|m| m["similarity_level"] = Value::Null), &["similarity_level"]),
        case("similarity 1e3", Edit(|m| m["similarity_level"] = json!(1e3)), &["similarity_level", "0 to 100"]),
        case("similarity upper case", Edit(|m| m["similarity_level"] = json!("HIGH")), &["similarity_level"]),
        case("similarity boolean", Edit(|m| m["similarity_level"] = json!(true)), &["similarity_level"]),
        case("images missing", Edit(|m| drop(m.as_object_mut().unwrap().remove("images"))), &["images", "required"]),
        case("images array", Edit(|m| m["images"] = json!(["front.jpg"])), &["images", "JSON object"]),
        case(
            "image path number",
            Edit(|m| m["images"]["document_front"] = json!(1)),
            &["images.document_front", "file path"],
        ),
        case(
            "image path empty",
            Edit(|m| m["images"]["document_front"] = json!("")),
            &["images.document_front", "file path"],
        ),
        case("image path null", Edit(|m| m["images"]["document_front"] = Value::Null), &["images.document_front"]),
        case(
            "unknown image slot",
            Edit(|m| m["images"]["document_back"] = json!("rear.jpg")),
            &["images.document_back", "unknown key"],
        ),
        case("unknown top-level key", Edit(|m| m["extra"] = json!({})), &["extra", "unknown key"]),
        case("video missing", Edit(|m| drop(m.as_object_mut().unwrap().remove("video"))), &["video", "required"]),
        case("video path number", Edit(|m| m["video"] = json!(5)), &["video", "file path"]),
        case("video path array", Edit(|m| m["video"] = json!(["video.mp4"])), &["video", "file path"]),
        // Paths.
        case(
            "traversal",
            Edit(|m| m["images"]["document_front"] = json!("../outside.jpg")),
            &["images.document_front", "outside the manifest's folder"],
        ),
        case(
            "absolute path",
            Edit(|m| m["images"]["document_front"] = json!("/etc/passwd")),
            &["images.document_front", "outside the manifest's folder"],
        ),
        case(
            "symlink out of the folder",
            Custom(Box::new(|dir| {
                std::fs::remove_file(dir.join("front.jpg")).unwrap();
                symlink(dir.parent().unwrap().join("outside.jpg"), dir.join("front.jpg")).unwrap();
                dir.join("manifest.json")
            })),
            front,
        ),
        case(
            "symlink loop",
            Custom(Box::new(|dir| {
                std::fs::remove_file(dir.join("front.jpg")).unwrap();
                symlink("loop-b", dir.join("front.jpg")).unwrap();
                symlink("front.jpg", dir.join("loop-b")).unwrap();
                dir.join("manifest.json")
            })),
            &["images.document_front", "symbolic links"],
        ),
        case("image is a FIFO", replace("front.jpg", fifo), &["images.document_front", "a FIFO"]),
        case("video is a FIFO", replace("video.mp4", fifo), &["video", "a FIFO"]),
        case(
            "image is a directory",
            replace("selfie.jpg", |p| std::fs::create_dir(p).unwrap()),
            &["images.document_owner", "a directory"],
        ),
        case(
            "image is missing",
            Edit(|m| m["images"]["document_rear"] = json!("nope.jpg")),
            &["images.document_rear", "cannot open"],
        ),
        case(
            "path holds NUL",
            Edit(|m| m["images"]["document_front"] = json!("front.jpg\u{0}x")),
            &["images.document_front", "control"],
        ),
        Case {
            name: "image is /dev/zero (allowed outside)",
            setup: Edit(|m| m["images"]["document_front"] = json!("/dev/zero")),
            args: &["--allow-outside"],
            expect: &["images.document_front", "a character device"],
        },
        case(
            "symlink to /dev/zero",
            replace("front.jpg", |p| symlink("/dev/zero", p).unwrap()),
            &["images.document_front", "outside"],
        ),
        // Media.
        case("4-byte JPEG", File("front.jpg", vec![0xFF, 0xD8, 0xFF, 0xE0]), &["images.document_front", "JPEG"]),
        case("truncated JPEG", File("front.jpg", sample("front.jpg")[..4000].to_vec()), front),
        case("JPEG headers only", File("front.jpg", [&sample("front.jpg")[..20], &[0xFF, 0xD9]].concat()), front),
        case(
            "PNG signature only",
            File("front.jpg", b"\x89PNG\r\n\x1a\n\0\0\0\x0DIHDR".to_vec()),
            &["images.document_front", "PNG"],
        ),
        case("text as image", File("rear.jpg", b"hello, I am text".to_vec()), &["images.document_rear", "JPEG or PNG"]),
        case(
            "GIF as image",
            File("rear.jpg", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec()),
            &["images.document_rear", "JPEG or PNG"],
        ),
        case("empty image", File("photo.jpg", vec![]), &["images.document_photo"]),
        case("tiny image", File("selfie.jpg", jpeg(16, 16)), &["images.document_owner", "under the minimum"]),
        case(
            "document too small",
            File("front.jpg", jpeg(200, 120)),
            &["images.document_front", "under the minimum of 320x200"],
        ),
        case("declared 60000x60000", File("front.jpg", jpeg_claiming(60000, 60000)), &["images.document_front"]),
        case("declared zero width", File("front.jpg", jpeg_claiming(0, 200)), front),
        case(
            "video as image",
            Edit(|m| m["images"]["document_photo"] = json!("video.mp4")),
            &["images.document_photo", "JPEG or PNG"],
        ),
        case(
            "ftyp-only MP4",
            File("video.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2".to_vec()),
            &["video", "not a playable video"],
        ),
        case("truncated MP4", File("video.mp4", sample("video.mp4")[..3000].to_vec()), &["video"]),
        case(
            "MP4 with garbage after ftyp",
            File("video.mp4", [&sample("video.mp4")[..32], &vec![0x5A; 4000][..]].concat()),
            &["video"],
        ),
        case("JPEG as video", Edit(|m| m["video"] = json!("front.jpg")), &["video", "MP4"]),
        case("empty video", File("video.mp4", vec![]), &["video", "MP4"]),
    ];
    // Oversize files, against the default limits would need huge files: they are covered with
    // small limits in `enroll::oversize_artifacts_are_refused_with_the_limit`.
    cases.push(case(
        "traversal after a dot",
        Edit(|m| m["images"]["document_owner"] = json!("./../outside.jpg")),
        &["images.document_owner", "outside"],
    ));
    cases
}

/// A recursive listing of `dir` with sizes, to show nothing changed.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(listing(&entry.path()));
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    out.sort();
    out
}

/// Runs `cmd`, killing it (and failing) after `limit`; its exit code, output and peak RSS.
fn run_bounded(cmd: Command, limit: Duration) -> (Option<i32>, String, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("maxrss");
    let mut child = measured(&cmd, &report).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn_guarded();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("enroll hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        peak_reported(&report, &cmd),
    )
}

/// The peak RSS any hostile input may take `enroll` to (the unit's `MemoryMax` is 512M).
const MAX_PEAK: u64 = 256 << 20;

#[test]
fn every_hostile_input_is_refused_cleanly() {
    let env = Env::new(free_port());
    // A queue that already holds one enrollment: refusals must leave it exactly as it was.
    env.enroll(&env.manifest("good", "", |_| {}));
    let before = listing(&env.data_dir());
    let cases = corpus();
    assert!(cases.len() >= 80, "the corpus has {} cases", cases.len());
    std::fs::write(env.dir.path().join("outside.jpg"), sample("front.jpg")).unwrap();
    let mut failures = Vec::new();
    let mut peaks: Vec<(u64, &str)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let dir_name = format!("case{i}");
        let mut manifest = env.manifest(&dir_name, "", |m| {
            if let Setup::Edit(edit) = &c.setup {
                edit(m);
            }
        });
        let dir = manifest.parent().unwrap().to_owned();
        match &c.setup {
            Setup::Raw(bytes) => std::fs::write(&manifest, bytes).unwrap(),
            Setup::File(name, bytes) => std::fs::write(dir.join(name), bytes).unwrap(),
            Setup::Custom(make) => manifest = make(&dir),
            Setup::Edit(_) => {}
        }
        let mut cmd = env.cmd();
        cmd.arg("enroll").arg(&manifest).args(c.args);
        let (code, stdout, stderr, peak) = run_bounded(cmd, Duration::from_secs(60));
        peaks.push((peak, c.name));
        let problems: Vec<String> = [
            (code != Some(2)).then(|| format!("exit {code:?}")),
            (peak > MAX_PEAK).then(|| format!("peak RSS {} MiB", peak >> 20)),
            (!stdout.is_empty()).then(|| format!("printed {stdout:?}")),
            stderr.contains("panicked").then(|| "panicked".to_owned()),
        ]
        .into_iter()
        .flatten()
        .chain(c.expect.iter().filter(|n| !stderr.contains(*n)).map(|n| format!("no {n:?} in the message")))
        .collect();
        if !problems.is_empty() {
            failures.push(format!("{}: {} — stderr: {}", c.name, problems.join(", "), stderr.trim()));
        }
        assert_eq!(listing(&env.data_dir()), before, "{}: the data directory changed", c.name);
    }
    peaks.sort();
    let (top, name) = peaks.last().copied().unwrap_or_default();
    println!(
        "hostile corpus: {} cases, peak RSS median {} MiB, highest {} MiB ({name}), limit {} MiB",
        peaks.len(),
        peaks[peaks.len() / 2].0 >> 20,
        top >> 20,
        MAX_PEAK >> 20
    );
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(env.list().len(), 1, "only the good enrollment is queued");
}

#[test]
fn a_symlink_swapped_during_enroll_never_stores_another_file() {
    let env = Env::new(free_port());
    let manifest = env.manifest("swap", "", |_| {});
    let dir = manifest.parent().unwrap().to_owned();
    std::fs::rename(dir.join("front.jpg"), dir.join("good.jpg")).unwrap();
    std::fs::write(dir.join("text.txt"), "not an image at all, just text").unwrap();
    symlink("good.jpg", dir.join("front.jpg")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = std::thread::spawn({
        let (dir, stop) = (dir.clone(), stop.clone());
        move || {
            let mut good = true;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                good = !good;
                let tmp = dir.join("front.tmp");
                let _ = std::fs::remove_file(&tmp);
                symlink(if good { "good.jpg" } else { "text.txt" }, &tmp).unwrap();
                std::fs::rename(&tmp, dir.join("front.jpg")).unwrap();
            }
        }
    });
    let cleaned = kiosk_agent::evidence::media::strip_jpeg(&std::fs::read(dir.join("good.jpg")).unwrap()).unwrap();
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&cleaned));
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..40 {
        let out = env.cmd().arg("enroll").arg(&manifest).output().unwrap();
        match out.status.code() {
            Some(0) => {
                accepted += 1;
                let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
                let shown = env.show(&id);
                let front =
                    shown["artifacts"].as_array().unwrap().iter().find(|a| a["name"] == "document_front").unwrap();
                assert_eq!(front["sha256"], expected.as_str(), "document_front is the image that was checked");
            }
            Some(2) => {
                refused += 1;
                assert!(String::from_utf8_lossy(&out.stderr).contains("images.document_front"));
            }
            other => panic!("enroll exited {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(accepted + refused, 40);
    assert_eq!(env.list().len(), accepted, "every accepted enrollment is queued, nothing else");
}
