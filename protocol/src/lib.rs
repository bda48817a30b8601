//! The vocabulary of the One-Shot API that both sides of the wire need: the request statuses a
//! server reports, the two Optimizer generations, the operations each routes and the image
//! slots of an upload. Only data lives here; what the agent does about a status is its own
//! policy (`kiosk_agent::sync`), and how a server moves between statuses is the sandbox's.

mod generation;
mod operation;
mod slot;
mod status;

pub use generation::Generation;
pub use operation::{Operation, UnknownOperation};
pub use slot::{Slot, UnknownSlot};
pub use status::RequestStatus;
