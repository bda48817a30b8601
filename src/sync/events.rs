//! The daemon's event bus: what happened, as typed events, for every component that cares.
//!
//! Components publish what they did and subscribe to what they need instead of polling the
//! queue: the worker wakes on [`DaemonEvent::WorkArrived`], the API's event stream turns
//! [`DaemonEvent::EnrollmentChanged`], [`DaemonEvent::Upload`] and [`DaemonEvent::Link`] into
//! its wire events, the upload bars of `sync --once` follow [`DaemonEvent::Upload`]. The bus
//! is a broadcast channel: a subscriber that falls behind is told it lagged
//! ([`Received::Lagged`]) and rereads what it watches, so a burst never blocks a publisher.

use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it is told it lagged.
const CAPACITY: usize = 1024;

/// Something that happened in the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// Something outside the worker asks it to look at the queue now.
    WorkArrived(Why),
    /// Enrollments of this process's queue changed (committed): their row ids, as the queue's
    /// change hook saw them ([`crate::queue::Queue::on_commit`]).
    EnrollmentChanged { rows: Vec<i64> },
    /// A video upload moved on: bytes handed to the connection so far, of `total`.
    Upload { id: String, sent: u64, total: u64 },
    /// A video upload ended (sent, failed or aborted).
    UploadEnded { id: String },
    /// The server became reachable (`true`) or unreachable.
    Link { online: bool },
}

/// Why the worker is asked to look at the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// An enrollment was queued through the API.
    Enrolled,
    /// An operator asked for a retry.
    RetryRequested,
    /// A signing-flow action (an approval, a document) through the API.
    FlowAction,
    /// The server called back (webhook).
    ServerCalledBack,
    /// Another process (`enroll`, `queue retry`, a CLI flow command) changed the queue and
    /// poked the wake socket: what changed is not known.
    OtherProcess,
}

/// The bus: cheap to clone, every clone publishes to the same subscribers.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<DaemonEvent>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus { tx: broadcast::channel(CAPACITY).0 }
    }
}

/// What a subscriber received.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Event(DaemonEvent),
    /// Events were missed: reread whatever is watched.
    Lagged,
    /// Every publisher is gone.
    Closed,
}

/// One subscriber's end of the bus.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<DaemonEvent>,
}

impl Subscription {
    /// The next event (cancel-safe: usable in `select!`).
    pub async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(event) => Received::Event(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Received::Lagged,
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

impl Bus {
    /// Publishes `event` to every current subscriber (none is fine).
    pub fn publish(&self, event: DaemonEvent) {
        let _ = self.tx.send(event);
    }

    /// Subscribes to the events published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription { rx: self.tx.subscribe() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_gets_every_event_and_a_slow_one_hears_it_lagged() {
        let bus = Bus::default();
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        bus.publish(DaemonEvent::Link { online: false });
        assert_eq!(a.recv().await, Received::Event(DaemonEvent::Link { online: false }));
        assert_eq!(b.recv().await, Received::Event(DaemonEvent::Link { online: false }));
        for _ in 0..CAPACITY + 1 {
            bus.publish(DaemonEvent::WorkArrived(Why::Enrolled));
        }
        assert_eq!(a.recv().await, Received::Lagged, "a subscriber that fell behind is told so");
        assert_eq!(a.recv().await, Received::Event(DaemonEvent::WorkArrived(Why::Enrolled)));
        drop(bus);
        drop(b);
        let mut drained = 0;
        while let Received::Event(_) = a.recv().await {
            drained += 1;
        }
        assert_eq!(drained, CAPACITY - 1, "what was published before the bus went stays readable");
    }
}
