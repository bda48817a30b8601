//! Progress of the agent's own long operations; the bar and lines themselves are
//! [`kiosk_common::progress`], shared with the capture helper.

use std::time::Duration;

pub use kiosk_common::progress::*;

/// Shows the video uploads of a batch run (`sync --once`) as they go, until `stop` fires (or
/// its sender is dropped): the worker's own counters, read five times a second.
pub async fn follow_uploads(worker: std::sync::Arc<crate::sync::Worker>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let multi = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
    let mut shown: std::collections::HashMap<String, Progress> = std::collections::HashMap::new();
    loop {
        let stopping = !matches!(stop.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty));
        // Once stopping, every upload shown has ended: it is finished below.
        let now = if stopping { Vec::new() } else { worker.upload_progress() };
        shown.retain(|id, p| {
            let going = now.iter().any(|(i, _, _)| i == id);
            if !going {
                p.set(p.total());
                p.finish();
            }
            going
        });
        for (id, sent, total) in now {
            let short: String = id.chars().take(8).collect();
            let p = shown
                .entry(id)
                .or_insert_with(|| Progress::new(format!("upload {short}: video"), total, Unit::Bytes).within(&multi));
            p.set(sent);
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut stop => {}
        }
    }
}
