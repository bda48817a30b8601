//! Progress of the agent's own long operations; the bar and lines themselves are
//! [`kiosk_common::progress`], shared with the capture helper.

pub use kiosk_common::progress::*;

use crate::sync::events::{DaemonEvent, Received, Subscription};

/// Shows the video uploads of a batch run (`sync --once`) as the worker tells them on its bus,
/// until `stop` fires (or its sender is dropped); an upload still shown then is finished.
pub async fn follow_uploads(mut bus: Subscription, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let multi = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
    let mut shown: std::collections::HashMap<String, Progress> = std::collections::HashMap::new();
    let finish = |p: Progress| {
        p.set(p.total());
        p.finish();
    };
    loop {
        let received = tokio::select! {
            received = bus.recv() => received,
            _ = &mut stop => Received::Closed,
        };
        match received {
            Received::Event(DaemonEvent::Upload { id, sent, total }) => {
                let short: String = id.chars().take(8).collect();
                let p = shown.entry(id).or_insert_with(|| {
                    Progress::new(format!("upload {short}: video"), total, Unit::Bytes).within(&multi)
                });
                p.set(sent);
            }
            Received::Event(DaemonEvent::UploadEnded { id }) => {
                if let Some(p) = shown.remove(&id) {
                    finish(p);
                }
            }
            Received::Event(_) | Received::Lagged => {}
            Received::Closed => {
                shown.into_values().for_each(finish);
                return;
            }
        }
    }
}
