//! Request statuses as data: every status public sources name, and [`RequestStatus::Other`] for
//! any other word a server sends, so that an unexpected status is recorded and handled, never a
//! parse failure and never a reason to loop for ever.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! statuses {
    ($($variant:ident => $word:literal,)*) => {
        /// A One-Shot request status (`details.status` of `GET /request/{pk}`, or a webhook's).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum RequestStatus {
            $(#[doc = concat!("`", $word, "`")] $variant,)*
            /// A status no public source lists, kept as the server spelled it.
            Other(String),
        }

        impl RequestStatus {
            /// Every named status (without [`RequestStatus::Other`]).
            pub const KNOWN: &'static [RequestStatus] = &[$(RequestStatus::$variant,)*];

            /// The word on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(RequestStatus::$variant => $word,)*
                    RequestStatus::Other(s) => s,
                }
            }

            /// Parses a status word; case and surrounding blanks do not matter, unknown words
            /// become [`RequestStatus::Other`].
            pub fn parse(word: &str) -> RequestStatus {
                let word = word.trim();
                $(if word.eq_ignore_ascii_case($word) { return RequestStatus::$variant; })*
                RequestStatus::Other(word.to_owned())
            }
        }
    };
}

statuses! {
    // Confirmed for VideoID by the vendor's documents.
    VideoPending => "VIDEOPENDING",
    VideoIncomplete => "VIDEOINCOMPLETE",
    VideoError => "VIDEOERROR",
    VideoReview => "VIDEOREVIEW",
    EnrollReady => "ENROLLREADY",
    // Platform statuses (one public source).
    Created => "CREATED",
    Validated => "VALIDATED",
    Approved => "APPROVED",
    Issued => "ISSUED",
    Valid => "VALID",
    Suspended => "SUSPENDED",
    Revoked => "REVOKED",
    Cancelled => "CANCELLED",
    Error => "ERROR",
    Finished => "FINISHED",
    DocUploaded => "DOCUPLOADED",
    OtpGenerated => "OTPGENERATED",
    Signed => "SIGNED",
    // VideoID events some servers report in the status field.
    VideoIdRefused => "VIDEOID_REFUSED",
    VideoIdFailed => "VIDEOID_FAILED",
    VideoIdValidated => "VIDEOID_VALIDATED",
}

impl RequestStatus {
    /// Whether this is a status no public source names.
    pub fn is_unknown(&self) -> bool {
        matches!(self, RequestStatus::Other(_))
    }
}

impl FromStr for RequestStatus {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(RequestStatus::parse(s))
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RequestStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RequestStatus::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_word_round_trips() {
        for status in RequestStatus::KNOWN {
            assert_eq!(&RequestStatus::parse(status.as_str()), status);
            assert!(!status.is_unknown());
        }
        assert_eq!(RequestStatus::KNOWN.len(), 21);
    }

    #[test]
    fn spelling_is_tolerated_and_unknown_words_are_kept() {
        assert_eq!(RequestStatus::parse(" videoreview\n"), RequestStatus::VideoReview);
        let other = RequestStatus::parse("VIDEOARCHIVED");
        assert_eq!(other, RequestStatus::Other("VIDEOARCHIVED".into()));
        assert!(other.is_unknown());
        assert_eq!(other.to_string(), "VIDEOARCHIVED");
    }
}
