use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::{EraseAfter, StorageConfig};
use crate::evidence::{ArtifactSource, Content, Customer, Enrollment, MediaKind, Pii, VideoCheck};

pub(super) fn storage(dir: &Path) -> StorageConfig {
    let key = dir.join("data/master.key");
    if !key.exists() {
        crate::crypto::create_master_key(&key).unwrap();
        crate::device_key::create(&dir.join("data/device.key")).unwrap();
    }
    StorageConfig {
        data_dir: dir.join("data"),
        master_key_file: dir.join("data/master.key"),
        device_key_file: dir.join("data/device.key"),
        max_spool_bytes: 1 << 40,
        min_free_bytes: 0,
        erase_after: EraseAfter::InReview,
        document_backup_dir: dir.join("backup"),
        max_retention: std::time::Duration::from_secs(30 * 86_400),
    }
}

/// An enrollment whose artifacts are real files under `dir`.
fn enrollment(dir: &Path, video_len: usize) -> Enrollment {
    let img = dir.join("front.jpg");
    std::fs::write(&img, b"\xFF\xD8\xFF\xE0 jpeg bytes \xFF\xD9").unwrap();
    let vid = dir.join("video.mp4");
    let mut v = b"\x00\x00\x00\x18ftypisom".to_vec();
    v.resize(video_len, 7);
    std::fs::write(&vid, &v).unwrap();
    Enrollment {
        pii: Pii {
            customer: Customer { mobile_phone_number: "+34699999999".into(), email: "ana@example.com".into() },
            acceptance: serde_json::Map::new(),
            ocr_data: serde_json::from_str(r#"{"given_name":"Ana","surname_1":"García","serial_number":"1Z"}"#)
                .unwrap(),
            security_checks: serde_json::Map::new(),
            similarity_level: 87.into(),
        },
        images: vec![ArtifactSource {
            name: "document_front".into(),
            kind: MediaKind::Jpeg,
            size: std::fs::metadata(&img).unwrap().len(),
            content: Content::Bytes(std::fs::read(&img).unwrap()),
            media: serde_json::json!({"width": 640, "height": 400}),
        }],
        video: ArtifactSource {
            name: "video".into(),
            kind: MediaKind::Mp4,
            size: video_len as u64,
            content: Content::File(std::fs::File::open(&vid).unwrap()),
            media: serde_json::json!({"codec": "h264"}),
        },
        capture: serde_json::Map::new(),
        claims_source: serde_json::Map::new(),
        video_check: VideoCheck::known(),
    }
}

#[test]
fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("q.db")).unwrap();
    schema::migrate(&mut conn).unwrap();
    schema::migrate(&mut conn).unwrap();
    let v: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, schema::LATEST);
    // Reopening through Queue::open on an existing database is harmless too.
    let s = storage(dir.path());
    drop(Queue::open(&s).unwrap());
    drop(Queue::open(&s).unwrap());
}

#[test]
fn enqueue_encrypts_everything_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let e = enrollment(dir.path(), 200_000);
    let id = q.enqueue(&e).unwrap();

    assert_eq!(q.load_pii(&id).unwrap(), e.pii);
    let video = q.open_artifact(&id, "video").unwrap().read_all().unwrap();
    assert_eq!(video, std::fs::read(dir.path().join("video.mp4")).unwrap());
    let arts = q.artifacts(&id).unwrap();
    assert_eq!(arts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["document_front", "video"]);
    assert_eq!(arts[1].sha256, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&video)));

    // No plaintext personal data or image bytes anywhere in the data directory.
    for entry in walk(&dir.path().join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in [&b"ana@example.com"[..], b"Garc", b"jpeg bytes", b"+34699999999"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{} leaks {:?}", entry.display(), needle);
        }
    }
    let s = q.show(&id).unwrap();
    assert_eq!(s.state, State::Queued);
    assert_eq!(s.history.unwrap()[0].kind, "queued");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn a_failed_enqueue_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let mut e = enrollment(dir.path(), 1000);
    // The file grew after validation: the copy refuses it and cleans up.
    e.video.size = 10;
    assert!(q.enqueue(&e).is_err());
    assert!(q.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(dir.path().join("data/spool")).unwrap().count(), 0);
}

/// The video file of an [`enrollment`], as validation opened it.
fn video_file(e: &Enrollment) -> &std::fs::File {
    match &e.video.content {
        Content::File(f) => f,
        _ => unreachable!("the test enrollment's video is a file"),
    }
}

#[test]
fn a_video_sealed_early_is_queued_under_its_id_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let e = enrollment(dir.path(), 3_000_000);
    let early = q.seal_video_early(video_file(&e)).expect("the spool takes unnamed files");
    let early_id = early.id.clone();
    // Until the enrollment is queued the sealed video has no name anywhere.
    assert!(walk(&dir.path().join("data/spool")).is_empty());
    let id = q.enqueue_with_early_video(&e, &|_| {}, Some(early)).unwrap();
    assert_eq!(id, early_id);
    let video = q.open_artifact(&id, "video").unwrap().read_all().unwrap();
    assert_eq!(video, std::fs::read(dir.path().join("video.mp4")).unwrap());
    let arts = q.artifacts(&id).unwrap();
    assert_eq!(arts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["document_front", "video"]);
    assert_eq!(arts[1].sha256, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&video)));
    assert_eq!(q.load_pii(&id).unwrap(), e.pii);
}

#[test]
fn an_early_sealing_leaves_nothing_when_the_enrollment_is_refused_or_the_video_changed() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    // Refused by validation: the early sealing is dropped, stopped, and its file is gone.
    let e = enrollment(dir.path(), 2_000_000);
    drop(q.seal_video_early(video_file(&e)).unwrap());
    // A video that is not the size validation saw is not queued.
    let mut e = enrollment(dir.path(), 500_000);
    let early = q.seal_video_early(video_file(&e)).unwrap();
    e.video.size = 400_000;
    let refused = q.enqueue_with_early_video(&e, &|_| {}, Some(early)).unwrap_err();
    assert!(refused.to_string().contains("video"), "{refused}");
    assert!(q.list().unwrap().is_empty());
    assert!(walk(&dir.path().join("data/spool")).is_empty(), "{:?}", walk(&dir.path().join("data/spool")));
    // Nothing of the customer's video is left anywhere in the data directory, named or not:
    // the file system's free space is back (an unnamed file is freed on its last close).
    assert!(std::fs::read_dir(dir.path().join("data/spool")).unwrap().next().is_none());
}

#[test]
fn spool_limit_refuses_with_the_missing_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = storage(dir.path());
    s.max_spool_bytes = 1500;
    let q = Queue::open(&s).unwrap();
    let e = enrollment(dir.path(), 1000);
    q.enqueue(&e).unwrap();
    let err = q.enqueue(&e).unwrap_err();
    assert!(matches!(err, QueueError::Space(SpaceError::SpoolFull { limit: 1500, .. })), "{err}");
    assert!(err.to_string().contains("bytes missing"), "{err}");
    assert_eq!(q.list().unwrap().len(), 1);
}

#[test]
fn erase_keeps_the_audit_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    q.erase_evidence(&id).unwrap();
    assert!(q.load_pii(&id).is_err());
    assert!(!dir.path().join("data/spool").join(&id).exists());
    let s = q.show(&id).unwrap();
    assert!(s.erased);
    assert_eq!(s.artifacts.unwrap().len(), 2, "hashes and sizes stay for audit");
}

#[test]
fn retry_resumes_where_it_failed_and_purge_guards_pending_work() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    assert!(matches!(q.retry(&id), Err(QueueError::WrongState { .. })));
    q.advance(&id, State::Queued, State::Creating, "t").unwrap();
    q.record_created(&id, "45836", Some("137")).unwrap();
    q.record_failed(
        &id,
        State::Created,
        crate::queue::counters::Class::Rejected,
        "400 Bad Request — Request not found",
    )
    .unwrap();
    let s = q.show(&id).unwrap();
    assert_eq!((s.state, s.last_error.as_deref()), (State::Failed, Some("400 Bad Request — Request not found")));
    assert_eq!(q.retry(&id).unwrap(), State::Created);
    assert!(matches!(q.purge(&id, false), Err(QueueError::WrongState { .. })));
    q.purge(&id, true).unwrap();
    assert!(matches!(q.show(&id), Err(QueueError::NotFound(_))));
    assert!(!dir.path().join("data/spool").join(&id).exists());
}

#[test]
fn orphan_spool_dirs_are_removed_only_when_old() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    drop(Queue::open(&s).unwrap());
    let young = s.data_dir.join("spool/young");
    let old = s.data_dir.join("spool/old");
    std::fs::create_dir_all(&young).unwrap();
    std::fs::create_dir_all(&old).unwrap();
    let past = std::time::SystemTime::now() - ORPHAN_SPOOL_AGE * 2;
    std::fs::File::open(&old).unwrap().set_modified(past).unwrap();
    // A writer that is still alive holds its marker; one that died does not.
    let (alive, dead) = (s.data_dir.join("spool/alive"), s.data_dir.join("spool/dead"));
    std::fs::create_dir_all(&alive).unwrap();
    std::fs::create_dir_all(&dead).unwrap();
    let held = std::fs::File::create(writing_marker(&alive)).unwrap();
    held.lock().unwrap();
    std::fs::File::create(writing_marker(&dead)).unwrap();
    drop(Queue::open(&s).unwrap());
    assert!(young.exists() && !old.exists());
    assert!(alive.exists() && !dead.exists());
    assert!(writing_marker(&alive).exists() && !writing_marker(&dead).exists());
    drop(held);
}

/// A model of the worker-facing state machine: the queue must agree with it after any sequence
/// of operations, and refused operations must change nothing.
#[derive(Debug, Clone)]
enum Op {
    Advance(State),
    Created,
    Fail,
    Retry,
}

/// The transitions the README's state diagram allows, written out here as pairs rather than
/// asked of `State::can_advance_to`: the model must not share the code it checks.
fn model_allows(from: State, to: State) -> bool {
    use State::*;
    const EDGES: [(State, State); 13] = [
        (Queued, Creating),
        (Creating, Created),
        (Created, EvidencesSent),
        (EvidencesSent, VideoSent),
        (VideoSent, InReview),
        (VideoSent, Approved),
        (InReview, Approved),
        (VideoSent, Signed),
        (InReview, Signed),
        (Approved, Signed),
        // Re-sends: the server lost what it had acknowledged.
        (VideoSent, Created),
        (VideoSent, EvidencesSent),
        (EvidencesSent, Created),
    ];
    let open = [Queued, Creating, Created, EvidencesSent, VideoSent, InReview, Approved];
    let ending = [Failed, Cancelled, Refused];
    EDGES.contains(&(from, to)) || (open.contains(&from) && ending.contains(&to))
}

/// The states in which the worker still has something to send or confirm (the README's
/// "pending"), written out for the model.
fn model_pending(state: State) -> bool {
    matches!(state, State::Queued | State::Creating | State::Created | State::EvidencesSent | State::VideoSent)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::sample::select(State::ALL.to_vec()).prop_map(Op::Advance),
        Just(Op::Created),
        Just(Op::Fail),
        Just(Op::Retry),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn queue_follows_the_state_machine_model(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&storage(dir.path())).unwrap();
        let id = q.enqueue(&enrollment(dir.path(), 64)).unwrap();
        let mut model = State::Queued;
        let mut failed_from = State::Queued;
        for op in ops {
            match op {
                Op::Advance(to) => {
                    let ok = q.advance(&id, model, to, "p").is_ok();
                    prop_assert_eq!(ok, model_allows(model, to), "{} -> {}", model, to);
                    if ok {
                        if to == State::Failed { failed_from = model; }
                        model = to;
                    }
                }
                Op::Created => {
                    let ok = q.record_created(&id, "1", Some("2")).is_ok();
                    prop_assert_eq!(ok, model == State::Creating);
                    if ok { model = State::Created; }
                }
                Op::Fail => {
                    if model_pending(model) {
                        q.record_failed(&id, model, crate::queue::counters::Class::Rejected, "x").unwrap();
                        failed_from = model;
                        model = State::Failed;
                    }
                }
                Op::Retry => {
                    let r = q.retry(&id);
                    prop_assert_eq!(r.is_ok(), model == State::Failed);
                    if let Ok(back) = r {
                        let expected = if model_pending(failed_from) { failed_from } else { State::Queued };
                        prop_assert_eq!(back, expected);
                        model = back;
                    }
                }
            }
            prop_assert_eq!(q.show(&id).unwrap().state, model);
            prop_assert_eq!(q.pending_count().unwrap(), usize::from(model_pending(model)));
        }
    }
}

#[test]
fn the_create_floor_is_fixed_by_the_first_create_and_unknown_on_an_empty_queue() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let first = q.enqueue(&enrollment(dir.path(), 64)).unwrap();
    // No request_pk is known yet: the floor is unknown, never 0 (a search from pk 1 upwards
    // would read a real server's whole history).
    assert_eq!(q.begin_create(&first).unwrap(), None);
    q.revert_creating(&first).unwrap();
    // Meanwhile another enrollment gets a request.
    let second = q.enqueue(&enrollment(dir.path(), 64)).unwrap();
    q.begin_create(&second).unwrap();
    q.record_created(&second, "45900", Some("200")).unwrap();
    // The first create's floor was never observed, so it stays unknown; a third enrollment
    // starts from the pk now known.
    assert_eq!(q.begin_create(&first).unwrap(), Some(45900), "re-beginning observes the floor now known");
    let third = q.enqueue(&enrollment(dir.path(), 64)).unwrap();
    assert_eq!(q.begin_create(&third).unwrap(), Some(45900));
    q.revert_creating(&third).unwrap();
    q.begin_create(&first).ok();
    q.record_created(&first, "45950", None).unwrap();
    // Once fixed, a floor does not move.
    assert_eq!(q.begin_create(&third).unwrap(), Some(45900));
    let job2 = q.pending_jobs(&[], 10).unwrap().into_iter().find(|j| j.id == second).unwrap();
    assert_eq!(job2.create_floor, None);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which files under `dir` hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    walk(dir).into_iter().filter(|p| contains(&std::fs::read(p).unwrap_or_default(), needle)).collect()
}

#[test]
fn erasure_leaves_neither_the_key_nor_the_sealed_data_in_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let q = Queue::open(&storage(dir.path())).unwrap();
    let kept = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 70_000)).unwrap();
    let sealed = |id: &str| -> (Vec<u8>, Vec<u8>) {
        q.conn()
            .query_row("SELECT wrapped_key, pii FROM enrollments WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
    };
    let (wrapped, pii) = sealed(&id);
    let video = std::fs::read(data.join("spool").join(&id).join("video.enc")).unwrap();
    let video_sample = &video[video.len() / 2..video.len() / 2 + 64];
    // The search finds what is there: before the erase, in the database or its WAL.
    assert!(!files_holding(&data, &wrapped).is_empty() && !files_holding(&data, &pii).is_empty());

    q.erase_evidence(&id).unwrap();
    for (what, needle) in [("wrapped key", &wrapped[..]), ("sealed personal data", &pii[..]), ("video", video_sample)] {
        assert_eq!(files_holding(&data, needle), Vec::<std::path::PathBuf>::new(), "the erased {what} survives");
    }
    let wal = data.join("queue.db-wal");
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0, "the WAL is truncated");
    // Cryptographic erase: the files are discarded, not overwritten, so a copy of the ciphertext
    // taken before (a disk image, blocks the card has not reused yet) may remain; it decrypts
    // with no key that is left, and the queue no longer opens it.
    assert!(q.open_artifact(&id, "video").is_err());
    let copy = dir.path().join("video-copy.enc");
    std::fs::write(&copy, &video).unwrap();
    let left: Vec<(String, Vec<u8>)> = {
        let conn = q.conn();
        let mut stmt = conn.prepare("SELECT id, wrapped_key FROM enrollments WHERE wrapped_key IS NOT NULL").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(left.len(), 1, "only the kept enrollment still has a key");
    for (owner, wrapped) in &left {
        assert!(q.master.unwrap_key(wrapped, id.as_bytes()).is_err(), "a key is bound to its own enrollment");
        let key = q.master.unwrap_key(wrapped, owner.as_bytes()).unwrap();
        let opened = crate::crypto::DecryptingReader::open(&key, artifact_aad(&id, "video").as_bytes(), &copy)
            .and_then(|r| r.read_all());
        assert!(opened.is_err(), "the erased video decrypts with another enrollment's key");
    }
    // The other enrollment is untouched, and the search would have found its key.
    let (kept_key, _) = sealed(&kept);
    assert!(!files_holding(&data, &kept_key).is_empty());
    assert_eq!(q.load_pii(&kept).unwrap(), enrollment(dir.path(), 1000).pii);
}

/// The sync worker's erasure: the key is destroyed and the spool leaves the queue at once; the
/// ciphertext waits in `erased/` (undecryptable, no key left) until `discard_erased` frees it.
/// A write that records an event with its audit record is one transaction: when the audit
/// record cannot be written (here a trigger refuses it), nothing of the write stays.
#[test]
fn a_write_whose_audit_record_fails_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let count = |table: &str| -> i64 {
        q.conn().query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    };
    let damaged = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let spool = dir.path().join("data/spool").join(&damaged).join("video.enc");
    let mut raw = std::fs::read(&spool).unwrap();
    raw[100] ^= 1;
    std::fs::write(&spool, raw).unwrap();
    let (events, audit) = (count("events"), count("audit"));
    q.conn()
        .execute_batch(
            "CREATE TEMP TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();

    for erase in [Queue::erase_evidence, Queue::erase_evidence_deferred] {
        let err = erase(&q, &id).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(q.load_pii(&id).unwrap(), enrollment(dir.path(), 1000).pii, "the key survives a failed erasure");
        assert!(!q.show(&id).unwrap().erased);
        assert!(q.open_artifact(&id, "video").unwrap().read_all().is_ok());
    }
    // A damaged evidence found by the scrub: not failed without its event and audit record.
    let err = q.scrub(&|_| false).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_ne!(q.show(&damaged).unwrap().state, State::Failed, "failed without its event and audit record");
    let err = q.record_sign_sent(&id).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(!q.sign_sent(&id).unwrap(), "a sign call noted without its audit record");
    let err = q.record_possible_orphan(&id).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    let flagged: i64 =
        q.conn().query_row("SELECT orphan_scan FROM enrollments WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(flagged, 0, "an orphan check noted without its audit record");
    let err = q.purge(&id, true).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(q.show(&id).is_ok(), "purged without an audit record");
    assert_eq!((count("events"), count("audit")), (events, audit), "an event without its audit record");

    q.conn().execute_batch("DROP TRIGGER refuse_audit").unwrap();
    q.erase_evidence_deferred(&id).unwrap();
    assert!(q.show(&id).unwrap().erased);
    assert_eq!(q.scrub(&|_| false).unwrap(), std::slice::from_ref(&damaged));
    assert_eq!(q.show(&damaged).unwrap().state, State::Failed);
    assert_eq!((count("events"), count("audit")), (events + 2, audit + 2));
}

/// Bookkeeping writes commit without waiting for the disk, and only they: the connection is
/// back to `synchronous=FULL` after each, whether it was written or refused.
#[test]
fn a_bookkeeping_write_leaves_every_other_write_durable() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let level = || -> i64 { q.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap() };
    assert_eq!(level(), 2, "FULL from the start");

    let during = std::cell::Cell::new(None);
    q.write_bookkeeping(|tx| {
        during.set(Some(tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?));
        Ok(())
    })
    .unwrap();
    assert_eq!(during.get(), Some(1), "NORMAL inside the bookkeeping write");
    assert_eq!(level(), 2);
    // Once BOOKKEEPING_SYNC_EVERY has passed since the last synced one, the next waits for the
    // disk too (which syncs the lax ones before it), and the one after is lax again.
    *q.bookkeeping_synced.lock().unwrap() = None;
    for expected in [2, 1] {
        q.write_bookkeeping(|tx| {
            during.set(Some(tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?));
            Ok(())
        })
        .unwrap();
        assert_eq!(during.get(), Some(expected));
    }

    q.record_upload_progress(&id, Some((5, 10))).unwrap();
    assert_eq!(level(), 2);
    let progress: (i64, i64) = q
        .conn()
        .query_row("SELECT upload_sent, upload_total FROM enrollments WHERE id = ?1", [&id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(progress, (5, 10), "committed, and read back at once");
    // A status read: bookkeeping when the agent knows the status, an event when it does not.
    let events = || -> i64 { q.conn().query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap() };
    let before = events();
    q.record_server_status(&id, &oneshot_protocol::RequestStatus::VideoReview, false).unwrap();
    assert_eq!((level(), events()), (2, before));
    assert_eq!(q.show(&id).unwrap().server_status, Some(oneshot_protocol::RequestStatus::VideoReview));
    q.record_server_status(&id, &oneshot_protocol::RequestStatus::parse("SOMETHINGNEW"), true).unwrap();
    assert_eq!((level(), events()), (2, before + 1));

    // A refused write changes nothing and still leaves the next durable.
    q.conn()
        .execute_batch(
            "CREATE TEMP TRIGGER refuse BEFORE UPDATE OF upload_sent ON enrollments
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let err = q.record_upload_progress(&id, Some((7, 10))).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(level(), 2, "a failed bookkeeping write left the connection lax");
    let sent: i64 =
        q.conn().query_row("SELECT upload_sent FROM enrollments WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(sent, 5);
}

#[test]
fn a_deferred_erasure_destroys_the_key_at_once_and_discards_the_ciphertext_later() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let q = Queue::open(&storage(dir.path())).unwrap();
    let kept = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 70_000)).unwrap();
    let wrapped: Vec<u8> =
        q.conn().query_row("SELECT wrapped_key FROM enrollments WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
    let spool = data.join("spool").join(&id);
    let names: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(q.discard_erased().unwrap(), 0, "nothing set aside yet");

    q.erase_evidence_deferred(&id).unwrap();
    assert!(!spool.exists(), "the spool no longer names it");
    let aside = data.join("erased").join(&id);
    let mut moved: Vec<_> = std::fs::read_dir(&aside).unwrap().map(|e| e.unwrap().file_name()).collect();
    moved.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(moved, expected, "the ciphertext waits aside, whole");
    assert_eq!(files_holding(&data, &wrapped), Vec::<std::path::PathBuf>::new(), "the erased key survives");
    assert!(q.open_artifact(&id, "video").is_err(), "the queue no longer opens it");
    assert!(q.load_pii(&id).is_err());
    // What waits aside decrypts with no key that is left.
    let copy = aside.join("video.enc");
    let key = q.master.unwrap_key(
        &q.conn()
            .query_row("SELECT wrapped_key FROM enrollments WHERE id = ?1", [&kept], |r| r.get::<_, Vec<u8>>(0))
            .unwrap(),
        kept.as_bytes(),
    );
    let opened = crate::crypto::DecryptingReader::open(&key.unwrap(), artifact_aad(&id, "video").as_bytes(), &copy)
        .and_then(|r| r.read_all());
    assert!(opened.is_err(), "the erased video decrypts with another enrollment's key");

    assert_eq!(q.discard_erased().unwrap(), 1);
    assert_eq!(std::fs::read_dir(data.join("erased")).unwrap().count(), 0, "discarded");
    assert_eq!(q.discard_erased().unwrap(), 0);
    // The other enrollment is untouched.
    assert_eq!(q.load_pii(&kept).unwrap(), enrollment(dir.path(), 1000).pii);
    assert!(q.open_artifact(&kept, "video").is_ok());
}

#[test]
fn the_database_shrinks_after_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let mut e = enrollment(dir.path(), 1000);
    e.pii.acceptance.insert("description".into(), "x".repeat(60_000).into());
    let ids: Vec<String> = (0..100).map(|_| q.enqueue(&e).unwrap()).collect();
    let db = dir.path().join("data/queue.db");
    q.destroy_freed_data();
    let full = std::fs::metadata(&db).unwrap().len();
    for id in &ids {
        q.erase_evidence(id).unwrap();
    }
    let after = std::fs::metadata(&db).unwrap().len();
    let free: i64 = q.conn().query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
    assert_eq!(free, 0, "no free pages are kept");
    assert!(after * 4 < full, "the file shrank from {full} to {after} bytes");
}

#[test]
fn a_database_made_before_auto_vacuum_is_converted_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let id = Queue::open(&s).unwrap().enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let db = s.data_dir.join("queue.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        conn.pragma_update(None, "auto_vacuum", "NONE").unwrap();
        conn.execute_batch("VACUUM").unwrap();
        assert_eq!(conn.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }
    let q = Queue::open(&s).unwrap();
    assert_eq!(q.conn().query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).unwrap(), 2);
    assert_eq!(q.show(&id).unwrap().state, State::Queued, "nothing is lost in the conversion");
}

#[test]
fn retention_erases_what_never_reached_review_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let old_pending = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let old_reviewed = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let old_busy = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let fresh = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    // They have waited forty days, as the clocks measured it (see `clock`).
    for id in [&old_pending, &old_reviewed, &old_busy] {
        q.conn()
            .execute("UPDATE enrollments SET waited_ms = ?2 WHERE id = ?1", params![id, 40 * 86_400_000i64])
            .unwrap();
    }
    q.conn()
        .execute("UPDATE enrollments SET review_since = ?2 WHERE id = ?1", params![old_reviewed, now_ms()])
        .unwrap();

    let erased = q.expire_retained(std::slice::from_ref(&old_busy)).unwrap();
    assert_eq!(
        erased,
        std::slice::from_ref(&old_pending),
        "only the old enrollment that never reached review, and is not being sent"
    );
    let s = q.show(&old_pending).unwrap();
    assert!(s.erased);
    assert_eq!(s.state, State::Failed);
    assert!(s.last_error.unwrap().contains("retention: evidence erased 30 days"));
    assert!(!dir.path().join("data/spool").join(&old_pending).exists());
    for kept in [&old_reviewed, &old_busy, &fresh] {
        assert!(!q.show(kept).unwrap().erased, "{kept} is kept");
    }
    let audit = q.audit_records().unwrap();
    assert!(audit
        .iter()
        .any(|r| r.kind == "retention_erased" && r.enrollment.as_deref() == Some(old_pending.as_str())));
    assert!(matches!(q.retry(&old_pending), Err(QueueError::WrongState { .. })), "nothing to re-send");
    assert_eq!(q.expire_retained(&[]).unwrap(), [old_busy], "the next pass takes the one that was busy");
}

#[test]
fn the_audit_chain_detects_edits_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    q.advance(&id, State::Queued, State::Creating, "t").unwrap();
    q.record_created(&id, "45836", Some("137")).unwrap();
    q.erase_evidence(&id).unwrap();
    let n = q.verify_audit(None).unwrap().unwrap();
    assert!(n >= 4, "{n} records");
    // The trail holds kinds and ids, never personal data.
    let text = serde_json::to_string(&q.audit_records().unwrap()).unwrap();
    for personal in ["ana@example.com", "+34699999999", "Ana", "García"] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    // The triggers refuse edits; an attacker who drops them is caught by the chain.
    assert!(q.conn().execute("UPDATE audit SET kind = 'x' WHERE seq = 2", []).is_err());
    assert!(q.conn().execute("DELETE FROM audit WHERE seq = 2", []).is_err());
    q.conn().execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;").unwrap();
    q.conn().execute("UPDATE audit SET kind = 'nothing happened' WHERE seq = 3", []).unwrap();
    let broken = q.verify_audit(None).unwrap().unwrap_err();
    assert_eq!((broken.seq, broken.reason), (3, "its content was changed"));
    q.conn().execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
    let broken = q.verify_audit(None).unwrap().unwrap_err();
    assert_eq!((broken.seq, broken.reason), (4, "records before it are missing"));
}

#[test]
fn a_chain_recomputed_after_an_edit_is_caught_by_the_anchor_sent_with_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    q.advance(&id, State::Queued, State::Creating, "t").unwrap();
    // What the evidences upload carries (with the manifest): the chain's head right then.
    let sent = q.pii_to_send(&id, true).unwrap().acceptance[capture_manifest::AUDIT_HEAD_KEY].clone();
    let (seq, hash) = (sent["seq"].as_i64().unwrap(), sent["hash"].as_str().unwrap().to_owned());
    assert_eq!(q.audit_records().unwrap().last().map(|r| (r.seq, r.hash.clone())), Some((seq, hash.clone())));
    q.record_created(&id, "45836", Some("137")).unwrap();
    assert_eq!(q.verify_audit(Some((seq, &hash))).unwrap(), Ok(q.audit_records().unwrap().len()));
    // A writer with the daemon's rights edits record 1 and recomputes every hash after it: the
    // chain is consistent with itself again...
    q.conn().execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;").unwrap();
    let mut records = q.audit_records().unwrap();
    records[0].kind = "nothing happened".into();
    let mut prev = String::new();
    for r in &mut records {
        r.prev_hash = prev.clone();
        r.hash = audit::link_hash(&r.prev_hash, r.at_ms, r.uid as i64, &r.command, r.enrollment.as_deref(), &r.kind);
        q.conn()
            .execute(
                "UPDATE audit SET kind = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1",
                rusqlite::params![r.seq, r.kind, r.prev_hash, r.hash],
            )
            .unwrap();
        prev = r.hash.clone();
    }
    assert!(q.verify_audit(None).unwrap().is_ok(), "self-consistent");
    // ... but the anchor the RA holds no longer matches.
    let broken = q.verify_audit(Some((seq, &hash))).unwrap().unwrap_err();
    assert_eq!((broken.seq, broken.reason), (seq, "it differs from the anchor: the chain was rewritten"));
}

#[test]
fn each_enrollment_has_a_signed_capture_manifest_that_detects_changes() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let mut e = enrollment(dir.path(), 5000);
    e.capture.insert("video".into(), serde_json::json!({"camera": "v4l2:/dev/video1", "verdict": "pass"}));
    let id = q.enqueue(&e).unwrap();
    let shown = q.show(&id).unwrap();
    let m = shown.capture_manifest.unwrap();
    assert_eq!(m["signature_valid"], true);
    assert_eq!(m["algorithm"], "Ed25519");
    let manifest = &m["manifest"];
    assert_eq!(manifest["enrollment"], id.as_str());
    assert_eq!(manifest["format"], capture_manifest::FORMAT);
    let device = crate::device_key::load(&dir.path().join("data/device.key")).unwrap();
    assert_eq!(manifest["device_id"], device.device_id().as_str());
    assert_eq!(m["public_key"], device.public_key_hex().as_str());
    // Every artifact's hash and size, as queued, with the kiosk's capture metadata.
    for (a, listed) in shown.artifacts.unwrap().iter().zip(manifest["artifacts"].as_array().unwrap()) {
        assert_eq!(
            (listed["name"].as_str(), listed["sha256"].as_str()),
            (Some(a.name.as_str()), Some(a.sha256.as_str()))
        );
        assert_eq!(listed["size"], a.size);
    }
    assert_eq!(manifest["artifacts"][1]["capture"]["camera"], "v4l2:/dev/video1");
    // No personal data inside.
    let text = manifest.to_string();
    assert!(!text.contains("ana@example.com") && !text.contains("García"));

    // Sent inside `acceptance` only when configured.
    assert!(q.pii_to_send(&id, false).unwrap().acceptance.get(capture_manifest::ACCEPTANCE_KEY).is_none());
    let sent = q.pii_to_send(&id, true).unwrap().acceptance[capture_manifest::ACCEPTANCE_KEY].clone();
    assert_eq!(sent["manifest"], *manifest);

    // Any change to the stored manifest breaks the signature.
    q.conn()
        .execute(
            "UPDATE enrollments SET capture_manifest = replace(capture_manifest, 'pass', 'fail') WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(q.show(&id).unwrap().capture_manifest.unwrap()["signature_valid"], false);
}

#[test]
fn a_manifest_re_signed_with_another_key_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 5000)).unwrap();
    assert_eq!(q.show(&id).unwrap().capture_manifest.unwrap()["signed_by_this_device"], true);
    // Someone with write access edits the manifest, signs it with a key of their own and
    // stores that key beside it: the signature checks out against the stored key...
    let forger = crate::device_key::create(&dir.path().join("forger.key")).unwrap();
    let stored = capture_manifest::stored(&q.conn(), &id).unwrap().unwrap();
    let json = stored.json.replace("\"verdict\"", "\"verdict_\"");
    let forged = capture_manifest::SignedManifest {
        signature: forger.sign_hex(json.as_bytes()),
        public_key: forger.public_key_hex(),
        json,
    };
    assert!(forged.is_valid(), "self-consistent");
    q.conn()
        .execute(
            "UPDATE enrollments SET capture_manifest = ?2, capture_signature = ?3, device_public_key = ?4 WHERE id = ?1",
            rusqlite::params![&id, forged.json, forged.signature, forged.public_key],
        )
        .unwrap();
    // ... but not against this device's key.
    let m = q.show(&id).unwrap().capture_manifest.unwrap();
    assert_eq!(
        (m["signature_valid"].as_bool(), m["signed_by_this_device"].as_bool()),
        (Some(false), Some(false)),
        "{m}"
    );
}

#[test]
fn enqueue_without_a_device_key_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    std::fs::remove_file(&s.device_key_file).unwrap();
    let q = Queue::open(&s).unwrap();
    let err = q.enqueue(&enrollment(dir.path(), 1000)).unwrap_err();
    assert!(err.to_string().contains("key init"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path().join("data/spool")).unwrap().count(), 0);
}

#[test]
fn evidence_erased_while_the_scrub_runs_is_not_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    // The worker sends and erases it just as the scrub reaches it.
    let failed = q
        .scrub(&|candidate| {
            q.erase_evidence(candidate).unwrap();
            false
        })
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let s = q.show(&id).unwrap();
    assert_ne!(s.state, State::Failed);
    assert!(s.erased);
}

#[test]
fn committed_changes_are_announced_with_their_rows_and_rolled_back_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let heard: std::sync::Arc<std::sync::Mutex<Vec<Vec<i64>>>> = Default::default();
    let sink = std::sync::Arc::clone(&heard);
    q.on_commit(move |rows| sink.lock().unwrap().push(rows));
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let rows = heard.lock().unwrap().concat();
    assert_eq!(rows.len(), 1, "one enrollment written: {rows:?}");
    let found = q.summaries_of_rows(&rows).unwrap();
    assert_eq!(found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);

    // A change that rolls back is never announced.
    heard.lock().unwrap().clear();
    {
        let mut conn = q.conn();
        let tx = conn.transaction().unwrap();
        tx.execute("UPDATE enrollments SET attempts = 99 WHERE id = ?1", [&id]).unwrap();
        tx.rollback().unwrap();
    }
    assert!(heard.lock().unwrap().is_empty(), "{:?}", heard.lock().unwrap());
    // Reading announces nothing; a committed change is announced once.
    q.list().unwrap();
    assert!(heard.lock().unwrap().is_empty());
    q.record_upload_progress(&id, Some((1, 2))).unwrap();
    assert_eq!(heard.lock().unwrap().as_slice(), std::slice::from_ref(&rows));
}

#[test]
fn a_process_that_changed_an_enrollment_pokes_the_worker_once_it_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let q = Queue::open(&s).unwrap();
    let worker = std::os::unix::net::UnixDatagram::bind(q.wake_socket()).unwrap();
    worker.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    // Only reading: no poke.
    q.list().unwrap();
    drop(q);
    assert!(worker.recv(&mut buf).is_err(), "a reader pokes nobody");
    // Writing, with nobody watching in this process: one poke when the queue is dropped.
    let q = Queue::open(&s).unwrap();
    q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    assert!(worker.recv(&mut buf).is_err(), "not before the process is done with the queue");
    drop(q);
    assert_eq!(worker.recv(&mut buf).unwrap(), 4, "one poke after the change");
    assert!(worker.recv(&mut buf).is_err(), "and only one");
    // The daemon's own queue (watched) never pokes itself.
    let q = Queue::open(&s).unwrap();
    q.on_commit(|_| {});
    q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    drop(q);
    assert!(worker.recv(&mut buf).is_err(), "a watched queue announces on its bus instead");
}

#[test]
fn running_out_of_descriptors_is_not_damaged_evidence() {
    use crate::crypto::CryptoError;
    use std::io::{Error, ErrorKind};
    let io = |e: Error| QueueError::Crypto(CryptoError::Io(e));
    assert!(io(Error::from_raw_os_error(24)).is_transient(), "EMFILE");
    assert!(io(Error::from_raw_os_error(23)).is_transient(), "ENFILE");
    assert!(io(Error::from_raw_os_error(12)).is_transient(), "ENOMEM");
    assert!(QueueError::Io { path: "x".into(), error: Error::from_raw_os_error(5) }.is_transient(), "EIO");
    // What the data says is damage: missing, cut short, not what was written.
    assert!(!io(Error::from(ErrorKind::NotFound)).is_transient());
    assert!(!io(Error::from(ErrorKind::UnexpectedEof)).is_transient());
    assert!(!io(Error::from(ErrorKind::InvalidData)).is_transient());
    assert!(!QueueError::Crypto(CryptoError::Decrypt { what: "video".into() }).is_transient());
    assert!(!QueueError::Damaged { id: "x".into(), detail: "y".into() }.is_transient());
}

/// A corrected clock neither erases evidence early nor keeps it for ever: retention counts what
/// the boot clock measured within a boot, and only a plausible wall-clock gap across a reboot.
#[test]
fn retention_counts_waited_time_not_wall_clock_dates() {
    use super::clock::Mark;
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let queued = Mark::decode(
        &q.conn()
            .query_row("SELECT waited_mark FROM enrollments WHERE id = ?1", [&id], |r| r.get::<_, String>(0))
            .unwrap(),
    )
    .expect("a mark at enqueue");
    let at = |boot: &str, after_boot: i64, wall_shift: i64| Mark {
        boot: boot.to_owned(),
        since_boot_ms: queued.since_boot_ms + after_boot,
        wall_ms: queued.wall_ms + wall_shift,
    };
    let boot = queued.boot.clone();
    // An hour later the clock is corrected 400 days ahead, then 400 days behind: nothing goes.
    assert!(q.expire_retained_at(&[], &at(&boot, 3_600_000, 400 * DAY)).unwrap().is_empty());
    assert!(q.expire_retained_at(&[], &at(&boot, 7_200_000, -400 * DAY)).unwrap().is_empty());
    // A reboot with the clock 400 days on: unknown time, nothing counted.
    let after_jump = Mark { boot: "another boot".into(), since_boot_ms: 1_000, wall_ms: queued.wall_ms + 400 * DAY };
    assert!(q.expire_retained_at(&[], &after_jump).unwrap().is_empty());
    assert!(!q.show(&id).unwrap().erased, "a corrected clock erased nothing");
    // Truly waiting: 31 days of uptime in that boot, clock wherever it is.
    let month = Mark { since_boot_ms: after_jump.since_boot_ms + 31 * DAY, ..after_jump.clone() };
    assert_eq!(
        q.expire_retained_at(&[], &month).unwrap(),
        std::slice::from_ref(&id),
        "what truly waited too long goes"
    );
}

/// How long a review has been followed is waited time too: with the clock corrected 400 days
/// ahead, or a reboot onto a clock 400 days on, the review still reads as an hour old (its
/// following does not end early); 31 days of uptime do count.
#[test]
fn review_following_counts_waited_time_not_wall_clock_dates() {
    use super::clock::Mark;
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    q.conn().execute("UPDATE enrollments SET state = 'video_sent', request_pk = '45836' WHERE id = ?1", [&id]).unwrap();
    q.advance(&id, State::VideoSent, State::InReview, "evidence complete").unwrap();
    let reviewed = Mark::decode(
        &q.conn()
            .query_row("SELECT waited_mark FROM enrollments WHERE id = ?1", [&id], |r| r.get::<_, String>(0))
            .unwrap(),
    )
    .expect("a mark on reaching review");
    let in_review = |now: &Mark| -> i64 {
        let due = q.reviews_due_at(i64::MAX, i64::MAX, i64::MAX, now).unwrap();
        assert_eq!(due.len(), 1, "never planned: due");
        due[0].1
    };
    let boot = reviewed.boot.clone();
    let hour_later = Mark {
        boot: boot.clone(),
        since_boot_ms: reviewed.since_boot_ms + 3_600_000,
        wall_ms: reviewed.wall_ms + 400 * DAY,
    };
    assert_eq!(in_review(&hour_later), 3_600_000, "the boot clock counts, not the corrected wall clock");
    let after_jump =
        Mark { boot: "another boot".into(), since_boot_ms: 1_000, wall_ms: hour_later.wall_ms + 400 * DAY };
    assert_eq!(in_review(&after_jump), 3_600_000, "a reboot onto a clock 400 days on is unknown time");
    let month = Mark { since_boot_ms: after_jump.since_boot_ms + 31 * DAY, ..after_jump.clone() };
    assert_eq!(in_review(&month), 3_600_000 + 31 * DAY, "what was truly waited counts");
}

/// How long a server status has stalled (an unknown status, or uploads the server does not
/// confirm) is waited time: a clock corrected 400 days ahead does not make it "too long".
#[test]
fn a_stalled_status_counts_waited_time_not_wall_clock_dates() {
    use super::clock::Mark;
    use crate::oneshot::RequestStatus;
    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let start = Mark::now();
    let odd = RequestStatus::parse("SOMETHINGNEW");
    let at = |after_boot: i64, wall_shift: i64| Mark {
        since_boot_ms: start.since_boot_ms + after_boot,
        wall_ms: start.wall_ms + wall_shift,
        ..start.clone()
    };
    let lasted = |now: &Mark| q.record_server_status_at(&id, &odd, true, now).unwrap().map(|d| d.as_millis() as i64);
    assert_eq!(lasted(&at(0, 0)), Some(0));
    assert_eq!(
        lasted(&at(3_600_000, 400 * DAY)),
        Some(3_600_000),
        "the boot clock counts, not the corrected wall clock"
    );
    let reboot = Mark { boot: "another boot".into(), since_boot_ms: 1_000, wall_ms: start.wall_ms + 800 * DAY };
    assert_eq!(lasted(&reboot), Some(3_600_000), "a reboot onto a clock 400 days on is unknown time");
    let later = Mark { since_boot_ms: reboot.since_boot_ms + DAY, ..reboot.clone() };
    assert_eq!(lasted(&later), Some(3_600_000 + DAY), "what was truly waited counts");
    assert_eq!(
        q.record_server_status_at(&id, &RequestStatus::VideoReview, false, &later).unwrap(),
        None,
        "not stalled"
    );
}

/// A purge never leaves a request on the server that nothing records: while a worker runs, an
/// enrollment whose create may be in flight is not purged; otherwise the audit trail names the
/// request the server keeps (or says one may exist).
#[test]
fn a_purge_never_leaves_an_unrecorded_request() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&storage(dir.path())).unwrap();
    let creating = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    let created = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    q.conn().execute("UPDATE enrollments SET state = 'creating' WHERE id = ?1", [&creating]).unwrap();
    q.conn()
        .execute("UPDATE enrollments SET state = 'created', request_pk = '45836' WHERE id = ?1", [&created])
        .unwrap();
    let worker = q.lock_worker().unwrap();
    let refused = q.purge(&creating, true).unwrap_err();
    assert!(refused.to_string().contains("create may be on its way"), "{refused}");
    assert!(q.show(&creating).is_ok(), "nothing was purged");
    drop(worker);
    q.purge(&creating, true).unwrap();
    q.purge(&created, true).unwrap();
    let kinds: Vec<String> = q.audit_records().unwrap().into_iter().map(|r| r.kind).collect();
    assert!(kinds.iter().any(|k| k.contains("a request may exist on the server")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.contains("request 45836 stays on the server")), "{kinds:?}");
}

/// Another process (a `kiosk-agent enroll` or `queue purge` beside the daemon) commits while
/// one of the queue's transactions waits to write. A transaction that began by reading would
/// then hold a snapshot older than the database, and SQLite refuses it at once ("database is
/// locked", whatever the busy timeout): every transaction takes the write lock when it begins,
/// waits its turn, and reads what the other process committed.
#[test]
fn a_write_beside_another_process_waits_for_it_instead_of_failing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Set by the queue's connection when it finds the lock taken: the other process commits
    // only then, so the commit falls while the queue waits, however slow the machine.
    static WAITING: AtomicBool = AtomicBool::new(false);
    fn note_and_wait(attempt: i32) -> bool {
        WAITING.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        attempt < 12_000
    }
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let q = Queue::open(&s).unwrap();
    let id = q.enqueue(&enrollment(dir.path(), 1000)).unwrap();
    q.conn().busy_handler(Some(note_and_wait)).unwrap();
    let other = Connection::open(s.data_dir.join("queue.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; INSERT INTO meta (name, value) VALUES ('other', 'process');").unwrap();
    let returned = std::sync::Arc::new(AtomicBool::new(false));
    let gave_up = std::sync::Arc::clone(&returned);
    let commits = std::thread::spawn(move || {
        while !WAITING.load(Ordering::SeqCst) && !gave_up.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        other.execute_batch("COMMIT").unwrap();
    });
    // `begin_create` reads the highest request_pk known, then moves the enrollment on.
    let floor = q.begin_create(&id);
    returned.store(true, Ordering::SeqCst);
    commits.join().unwrap();
    assert_eq!(floor.unwrap(), None);
    assert!(WAITING.load(Ordering::SeqCst), "the queue never waited for the other process's lock");
    assert_eq!(q.show(&id).unwrap().state, State::Creating);
    let seen: String = q.conn().query_row("SELECT value FROM meta WHERE name = 'other'", [], |r| r.get(0)).unwrap();
    assert_eq!(seen, "process");
}
