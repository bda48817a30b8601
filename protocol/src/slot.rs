//! The image slots of `videoid_data.images`: the one list the agent's manifest, its API, the
//! capture service and the sandbox all read.

use std::fmt;
use std::str::FromStr;

/// One image of the evidences upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// The ID document's front.
    DocumentFront,
    /// Its back (optional: a passport has none).
    DocumentRear,
    /// The holder's photo as printed on the document.
    DocumentPhoto,
    /// The customer's face, taken at the kiosk (the selfie).
    DocumentOwner,
}

impl Slot {
    pub const ALL: [Slot; 4] = [Slot::DocumentFront, Slot::DocumentRear, Slot::DocumentPhoto, Slot::DocumentOwner];

    /// The keys of [`Slot::ALL`], in that order.
    pub const NAMES: [&'static str; 4] =
        [Slot::ALL[0].as_str(), Slot::ALL[1].as_str(), Slot::ALL[2].as_str(), Slot::ALL[3].as_str()];

    /// The key under `videoid_data.images`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Slot::DocumentFront => "document_front",
            Slot::DocumentRear => "document_rear",
            Slot::DocumentPhoto => "document_photo",
            Slot::DocumentOwner => "document_owner",
        }
    }

    /// Whether an upload must carry this image (all but the rear).
    pub fn required(self) -> bool {
        !matches!(self, Slot::DocumentRear)
    }

    /// Whether the image shows a side of the ID document (rather than a face).
    pub fn is_document_side(self) -> bool {
        matches!(self, Slot::DocumentFront | Slot::DocumentRear)
    }

    /// The slots' keys, for messages: `document_front, document_rear, …`.
    pub fn names() -> String {
        Slot::NAMES.join(", ")
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that names no image slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSlot(pub String);

impl fmt::Display for UnknownSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is no image slot; one of {}", self.0, Slot::names())
    }
}

impl std::error::Error for UnknownSlot {}

impl FromStr for Slot {
    type Err = UnknownSlot;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Slot::ALL.into_iter().find(|slot| slot.as_str() == s).ok_or_else(|| UnknownSlot(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_parses_back_and_only_the_rear_is_optional() {
        for slot in Slot::ALL {
            assert_eq!(slot.as_str().parse::<Slot>(), Ok(slot));
            assert_eq!(slot.required(), slot != Slot::DocumentRear);
        }
        assert!("video".parse::<Slot>().unwrap_err().to_string().contains("document_owner"));
    }
}
