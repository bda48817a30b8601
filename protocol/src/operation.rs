//! The One-Shot operations the agent calls, and where each generation routes them by default.
//!
//! One table instead of a struct of named path fields: the configuration's overrides
//! (`oneshot.paths.<key>`), the client and the golden tests all index it by [`Operation`].

use std::fmt;
use std::str::FromStr;

use crate::Generation;

/// One call of the One-Shot API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Create,
    Evidences,
    Video,
    Status,
    Hello,
    Approve,
    Validate,
    Refuse,
    VideoDownload,
    DocumentUpload,
    Contract,
    Otp,
    Sign,
    DocumentSigned,
    DocumentOriginal,
    DocumentDelete,
    DocumentsDelete,
    /// The image of a visible signature, uploaded before the sign call that names its uid.
    ImageUpload,
    /// The old generation deletes per copy: after the original, the signed copy.
    DocumentDeleteSigned,
    /// A customer's requests, by email and phone (the orphan search).
    RequestSearch,
    /// Corrects a request's OCR data before approval (`PUT`).
    RequestUpdate,
    /// Trades the RAO's username, password and PIN for a token (`POST`), once, off the kiosk's disk.
    TokenCreate,
    /// The RAO tokens (`GET`).
    TokenList,
    /// Revokes one RAO token (`DELETE`).
    TokenDelete,
    /// Cancels a request on the server (`DELETE`), e.g. an orphan; only on an operator's word.
    Cancel,
}

impl Operation {
    pub const ALL: [Operation; 25] = [
        Operation::Create,
        Operation::Evidences,
        Operation::Video,
        Operation::Status,
        Operation::Hello,
        Operation::Approve,
        Operation::Validate,
        Operation::Refuse,
        Operation::VideoDownload,
        Operation::DocumentUpload,
        Operation::Contract,
        Operation::Otp,
        Operation::Sign,
        Operation::DocumentSigned,
        Operation::DocumentOriginal,
        Operation::DocumentDelete,
        Operation::DocumentsDelete,
        Operation::ImageUpload,
        Operation::DocumentDeleteSigned,
        Operation::RequestSearch,
        Operation::RequestUpdate,
        Operation::TokenCreate,
        Operation::TokenList,
        Operation::TokenDelete,
        Operation::Cancel,
    ];

    /// The operation's key under `oneshot.paths` in the configuration.
    pub fn key(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Evidences => "evidences",
            Operation::Video => "video",
            Operation::Status => "status",
            Operation::Hello => "hello",
            Operation::Approve => "approve",
            Operation::Validate => "validate",
            Operation::Refuse => "refuse",
            Operation::VideoDownload => "video_download",
            Operation::DocumentUpload => "document_upload",
            Operation::Contract => "contract",
            Operation::Otp => "otp",
            Operation::Sign => "sign",
            Operation::DocumentSigned => "document_signed",
            Operation::DocumentOriginal => "document_original",
            Operation::DocumentDelete => "document_delete",
            Operation::DocumentsDelete => "documents_delete",
            Operation::ImageUpload => "image_upload",
            Operation::DocumentDeleteSigned => "document_delete_signed",
            Operation::RequestSearch => "request_search",
            Operation::RequestUpdate => "request_update",
            Operation::TokenCreate => "token_create",
            Operation::TokenList => "token_list",
            Operation::TokenDelete => "token_delete",
            Operation::Cancel => "cancel",
        }
    }

    /// The HTTP method, the same on both generations.
    pub fn method(self) -> &'static str {
        use Operation::*;
        match self {
            Status | Hello | VideoDownload | Contract | DocumentSigned | DocumentOriginal | RequestSearch
            | TokenList => "GET",
            DocumentDelete | DocumentsDelete | DocumentDeleteSigned | TokenDelete | Cancel => "DELETE",
            RequestUpdate => "PUT",
            Create | Evidences | Video | Approve | Validate | Refuse | DocumentUpload | Otp | Sign | ImageUpload
            | TokenCreate => "POST",
        }
    }

    /// The path template a server of `generation` routes this operation at, relative to its
    /// base path; `None` where that generation has no such operation (the new Optimizer has no
    /// separate validate step). Templates use `{request_pk}`, `{videoid_pk}` and `{uid}`.
    pub fn default_path(self, generation: Generation) -> Option<&'static str> {
        use Operation::*;
        Some(match generation {
            Generation::New => match self {
                Create => "/videoid",
                Evidences => "/videoid/{videoid_pk}/evidences",
                Video => "/videoid/{videoid_pk}/video",
                Status => "/request/{request_pk}",
                Hello => "/hello",
                Approve => "/videoid/{videoid_pk}/approve",
                Validate => return None,
                Refuse => "/videoid/{videoid_pk}/refuse",
                // "Download Videoid Video" exists but its path is not published: assumed.
                VideoDownload => "/videoid/{videoid_pk}/download/video",
                DocumentUpload => "/document/{request_pk}",
                // A FastAPI application: no trailing slashes (its operation ids show the routes).
                Contract => "/contract/{request_pk}",
                Otp => "/otp/{request_pk}",
                Sign => "/sign/{request_pk}",
                DocumentSigned => "/document/{request_pk}/{uid}?document_type=signed",
                DocumentOriginal => "/document/{request_pk}/{uid}?document_type=original",
                DocumentDelete => "/document/{request_pk}/{uid}",
                DocumentsDelete => "/document/{request_pk}",
                ImageUpload => "/image",
                // One delete removes the document and its signed copy.
                DocumentDeleteSigned => return None,
                // The RA's search; whether the new Optimizer passes it on is not published.
                RequestSearch => "/requests",
                RequestUpdate => "/request/{request_pk}",
                TokenCreate => "/token",
                TokenList => "/tokens",
                TokenDelete => "/token/{uid}",
                // Not published for this generation: assumed the old one's.
                Cancel => "/request/{request_pk}",
            },
            Generation::Old => match self {
                Create => "/videoid",
                Evidences => "/videoid/{request_pk}/evidences",
                Video => "/videoid/{request_pk}/evidences/video",
                Status => "/request/{request_pk}",
                Hello => "/hello",
                // Singular in the curl sample, the guide and integrator code; the yaml path says
                // `/requests/`: a deployment that follows it sets `oneshot.paths.approve`.
                Approve => "/request/{request_pk}/approve",
                Validate => "/videoid/{request_pk}/validate",
                Refuse => "/videoid/{request_pk}/refuse",
                VideoDownload => "/videoid/{request_pk}/download/video",
                DocumentUpload => "/document/{request_pk}",
                Contract => "/document/{request_pk}/contract",
                Otp => "/otp/{request_pk}",
                Sign => "/sign/{request_pk}",
                DocumentSigned => "/document/{request_pk}/signed/{uid}",
                DocumentOriginal => "/document/{request_pk}/original/{uid}",
                DocumentDelete => "/document/{request_pk}/original/{uid}",
                DocumentsDelete => "/documents/{request_pk}",
                ImageUpload => "/image",
                DocumentDeleteSigned => "/document/{request_pk}/signed/{uid}",
                RequestSearch => "/requests",
                RequestUpdate => "/request/{request_pk}",
                TokenCreate => "/token",
                TokenList => "/tokens",
                TokenDelete => "/token/{uid}",
                Cancel => "/request/{request_pk}",
            },
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// An `oneshot.paths` key that names no operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOperation(pub String);

impl fmt::Display for UnknownOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = Operation::ALL.iter().map(|o| o.key()).collect();
        write!(f, "{:?} is no One-Shot operation; one of {}", self.0, keys.join(", "))
    }
}

impl std::error::Error for UnknownOperation {}

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL.into_iter().find(|o| o.key() == s).ok_or_else(|| UnknownOperation(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back_to_its_operation() {
        for op in Operation::ALL {
            assert_eq!(op.key().parse::<Operation>(), Ok(op), "{op:?}");
        }
        let err = "nope".parse::<Operation>().unwrap_err().to_string();
        assert!(err.contains("\"nope\" is no One-Shot operation") && err.contains("documents_delete"), "{err}");
    }

    /// Golden: every default path, byte for byte, as `docs/protocol.md` and the README give it; the new
    /// generation (a FastAPI application) has no trailing slash anywhere.
    #[test]
    fn default_paths_are_the_notes_byte_for_byte() {
        use Operation::*;
        let golden: [(Operation, Option<&str>, &str); 25] = [
            (Create, Some("/videoid"), "/videoid"),
            (Evidences, Some("/videoid/{videoid_pk}/evidences"), "/videoid/{request_pk}/evidences"),
            (Video, Some("/videoid/{videoid_pk}/video"), "/videoid/{request_pk}/evidences/video"),
            (Status, Some("/request/{request_pk}"), "/request/{request_pk}"),
            (Hello, Some("/hello"), "/hello"),
            (Approve, Some("/videoid/{videoid_pk}/approve"), "/request/{request_pk}/approve"),
            (Validate, None, "/videoid/{request_pk}/validate"),
            (Refuse, Some("/videoid/{videoid_pk}/refuse"), "/videoid/{request_pk}/refuse"),
            (VideoDownload, Some("/videoid/{videoid_pk}/download/video"), "/videoid/{request_pk}/download/video"),
            (DocumentUpload, Some("/document/{request_pk}"), "/document/{request_pk}"),
            (Contract, Some("/contract/{request_pk}"), "/document/{request_pk}/contract"),
            (Otp, Some("/otp/{request_pk}"), "/otp/{request_pk}"),
            (Sign, Some("/sign/{request_pk}"), "/sign/{request_pk}"),
            (
                DocumentSigned,
                Some("/document/{request_pk}/{uid}?document_type=signed"),
                "/document/{request_pk}/signed/{uid}",
            ),
            (
                DocumentOriginal,
                Some("/document/{request_pk}/{uid}?document_type=original"),
                "/document/{request_pk}/original/{uid}",
            ),
            (DocumentDelete, Some("/document/{request_pk}/{uid}"), "/document/{request_pk}/original/{uid}"),
            (DocumentsDelete, Some("/document/{request_pk}"), "/documents/{request_pk}"),
            (ImageUpload, Some("/image"), "/image"),
            (DocumentDeleteSigned, None, "/document/{request_pk}/signed/{uid}"),
            (RequestSearch, Some("/requests"), "/requests"),
            (RequestUpdate, Some("/request/{request_pk}"), "/request/{request_pk}"),
            (TokenCreate, Some("/token"), "/token"),
            (TokenList, Some("/tokens"), "/tokens"),
            (TokenDelete, Some("/token/{uid}"), "/token/{uid}"),
            (Cancel, Some("/request/{request_pk}"), "/request/{request_pk}"),
        ];
        for (op, new, old) in golden {
            let method = match op {
                Status | Hello | VideoDownload | Contract | DocumentSigned | DocumentOriginal | RequestSearch
                | TokenList => "GET",
                DocumentDelete | DocumentsDelete | DocumentDeleteSigned | TokenDelete | Cancel => "DELETE",
                RequestUpdate => "PUT",
                _ => "POST",
            };
            assert_eq!(op.method(), method, "{op}");
            assert_eq!(op.default_path(Generation::New), new, "{op} (new)");
            assert_eq!(op.default_path(Generation::Old), Some(old), "{op} (old)");
        }
        for op in Operation::ALL {
            let path = op.default_path(Generation::New).unwrap_or("");
            assert!(!path.split('?').next().unwrap().ends_with('/'), "{op}: {path} has a trailing slash");
        }
    }

    #[test]
    fn only_validate_and_the_per_copy_delete_are_missing_and_only_on_the_new_generation() {
        for op in Operation::ALL {
            assert!(op.default_path(Generation::Old).is_some(), "{op:?}");
            let old_only = matches!(op, Operation::Validate | Operation::DocumentDeleteSigned);
            assert_eq!(op.default_path(Generation::New).is_none(), old_only, "{op:?}");
        }
    }
}
