//! The API's event stream (`GET /v1/events`), fed from the daemon's bus.
//!
//! Nothing here polls the queue: enrollments are reread when the queue says rows changed
//! ([`DaemonEvent::EnrollmentChanged`], from its commit hook), and the whole list only when
//! another process poked the worker or this subscriber fell behind. An enrollment is announced
//! when its view differs from the last one announced; uploads and the link are relayed as
//! they are told.

use std::collections::HashMap;

use crate::queue::Summary;
use crate::sync::blocking;
use crate::sync::events::{DaemonEvent, Received, Subscription, Why};

use super::{wire, ApiState};

/// Relays the bus to the API's subscribers until the bus closes.
pub async fn run(s: ApiState, mut bus: Subscription) {
    let mut feed = Feed { s, last: HashMap::new() };
    // What is there at the start is not news.
    feed.reread_all(false).await;
    loop {
        match bus.recv().await {
            Received::Event(DaemonEvent::EnrollmentChanged { rows }) => {
                if let Ok(changed) = blocking(&feed.s.queue, move |q| q.summaries_of_rows(&rows)).await {
                    feed.announce(&changed, true);
                }
            }
            Received::Event(DaemonEvent::WorkArrived(Why::OtherProcess)) | Received::Lagged => {
                feed.reread_all(true).await
            }
            // Work arriving in this process shows up as changed rows.
            Received::Event(DaemonEvent::WorkArrived(_) | DaemonEvent::UploadEnded { .. }) => {}
            Received::Event(DaemonEvent::Upload { id, sent, total }) => {
                feed.send(wire::Event::Upload { id, sent_bytes: sent, total_bytes: total })
            }
            Received::Event(DaemonEvent::Link { online }) => feed.send(wire::Event::Link { online }),
            Received::Closed => return,
        }
    }
}

struct Feed {
    s: ApiState,
    /// The view of each enrollment as last announced (or found at the start).
    last: HashMap<String, wire::Enrollment>,
}

impl Feed {
    fn send(&self, event: wire::Event) {
        let _ = self.s.events.send(event);
    }

    async fn reread_all(&mut self, announce: bool) {
        if let Ok(list) = blocking(&self.s.queue, |q| q.list()).await {
            self.announce(&list, announce);
        }
    }

    fn announce(&mut self, summaries: &[Summary], announce: bool) {
        for summary in summaries {
            let view = wire::Enrollment::from(summary);
            if self.last.get(&view.id) != Some(&view) {
                if announce {
                    self.send(wire::Event::Enrollment(view.clone()));
                }
                self.last.insert(view.id.clone(), view);
            }
        }
    }
}
