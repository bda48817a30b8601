//! `GET /metrics`: Prometheus text for the fleet's dashboards and alerts.
//!
//! Gauges are read from the queue at scrape time, not kept in memory: `enroll` and `queue retry`
//! change the queue from other processes, and a restart would otherwise reset them. A fresh
//! registry per scrape keeps that simple (a scrape is a few small queries).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::{ApiError, ApiState};
use crate::queue::State as QState;
use crate::sync::blocking;

#[utoipa::path(get, path = "/metrics", tag = "daemon", security(("bearer" = []), ("session" = [])),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(s): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    // The list and the free space, read off the executor.
    let (list, free_bytes) =
        blocking(&s.queue, |q| Ok((q.list()?, crate::fsutil::available_bytes(q.dir()).map_or(0, |b| b as i64))))
            .await?;
    let mut registry = Registry::with_prefix("kiosk_agent");

    let by_state = Family::<Vec<(String, String)>, Gauge>::default();
    // Every state appears (at 0) even when no enrollment is in it.
    for state in QState::ALL {
        by_state.get_or_create(&vec![("state".into(), state.to_string())]).set(0);
    }
    for e in &list {
        by_state.get_or_create(&vec![("state".into(), e.state.to_string())]).inc();
    }
    registry.register("enrollments", "Enrollments by local state", by_state);

    let backlog = crate::queue::Backlog::of(&list);
    let pending_bytes = Gauge::<i64>::default();
    pending_bytes.set(backlog.pending_bytes as i64);
    registry.register("pending_bytes", "Bytes of evidence waiting to be sent", pending_bytes);

    let oldest = Gauge::<i64>::default();
    oldest.set(backlog.oldest_pending.map_or(0, |d| d.as_secs() as i64));
    registry.register("oldest_pending_seconds", "Age of the oldest enrollment waiting to be sent", oldest);

    let contact = Gauge::<i64>::default();
    // -1: no contact with the server since the daemon started.
    contact.set(s.worker.last_contact_ms().map_or(-1, |ms| (crate::queue::now_ms() - ms).max(0) / 1000));
    registry.register("seconds_since_server_contact", "Seconds since the server last answered (-1: not yet)", contact);

    let online = Gauge::<i64>::default();
    online.set(i64::from(s.worker.is_online()));
    registry.register("online", "1 while the One-Shot server is reachable", online);

    let free = Gauge::<i64>::default();
    free.set(free_bytes);
    registry.register("free_disk_bytes", "Free bytes on the data directory's file system", free);

    let erased = Gauge::<i64>::default();
    erased.set(list.iter().filter(|e| e.erased).count() as i64);
    registry.register("evidence_erased", "Enrollments whose local evidence was erased", erased);

    let orphans = Gauge::<i64>::default();
    orphans.set(list.iter().map(|e| e.orphans.len() as i64).sum());
    registry.register("orphans", "Orphan requests recorded on the server", orphans);

    register_counters(&mut registry, blocking(&s.queue, |q| q.counters()).await?);

    let probes = Counter::<u64>::default();
    probes.inc_by(s.worker.probes());
    registry.register("probes", "Connectivity probes sent since the daemon started", probes);

    let build = Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]);
    registry.register("build", "kiosk-agent's version", build);

    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}

/// The queue's counters as Prometheus counter families (`kiosk_agent_uploads_total{kind=…}`, …).
/// One series' labels, as (name, value) pairs.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// Every series a dashboard or alert may ask for is present from the start, at 0.
fn register_counters(registry: &mut Registry, counters: Vec<crate::queue::counters::Counter>) {
    use crate::queue::counters::names;
    let classes = crate::queue::counters::Class::ALL.map(|c| c.as_str());
    let families: [(&str, &str, Vec<Labels>); 5] = [
        (
            names::UPLOADS,
            "Uploads delivered to the server, by kind",
            vec![vec![("kind", "evidences")], vec![("kind", "video")]],
        ),
        (
            names::UPLOAD_BYTES,
            "Bytes of evidence files delivered (before base64), by kind",
            vec![vec![("kind", "evidences")], vec![("kind", "video")]],
        ),
        (
            names::RETRIES,
            "Failed attempts to be retried, by reason class",
            classes.iter().map(|c| vec![("class", *c)]).collect(),
        ),
        (
            names::FAILURES,
            "Enrollments that ended failed, by reason class",
            classes.iter().map(|c| vec![("class", *c)]).collect(),
        ),
        (
            names::CAPTURES,
            "Stills taken through the API, by camera role and verdict",
            crate::config::Role::ALL
                .iter()
                .flat_map(|r| ["pass", "retake"].map(|v| vec![("role", r.as_str()), ("verdict", v)]))
                .collect(),
        ),
    ];
    for (name, help, zeros) in families {
        let family = Family::<Vec<(String, String)>, Counter>::default();
        for labels in zeros {
            family.get_or_create(&labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()).inc_by(0);
        }
        for c in counters.iter().filter(|c| c.name == name) {
            family.get_or_create(&c.labels).inc_by(c.value);
        }
        registry.register(name, help, family);
    }
}
