//! The signing flow's settings: the RAO who approves (`[rao]`) and the signature's appearance
//! (`[signature]`). RAO secrets come from files, never from the command line or the file itself:
//! through `$CREDENTIALS_DIRECTORY` when the systemd unit provides them (`LoadCredential=`), else
//! from the named path, which must not be readable by group or others.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[rao]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRao {
    pub id: Option<String>,
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub pin_file: Option<PathBuf>,
}

/// `[signature]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignature {
    pub text: Option<Vec<String>>,
    pub date_format: Option<String>,
    pub timezone: Option<String>,
    pub position: Option<String>,
    pub page: Option<i64>,
    /// A PNG file (relative to the configuration's folder).
    pub image: Option<PathBuf>,
}

/// A secret read from a file: wiped from memory when dropped.
pub type Secret = zeroize::Zeroizing<String>;

/// How the RAO proves who they are in approve, validate and refuse bodies.
#[derive(Clone, PartialEq, Eq)]
pub enum RaoCredentials {
    Token(Secret),
    Login { username: String, password: Secret, pin: Secret },
}

impl fmt::Debug for RaoCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaoCredentials::Token(_) => f.write_str("Token(<redacted>)"),
            RaoCredentials::Login { username, .. } => write!(f, "Login({username}, <redacted>)"),
        }
    }
}

/// The validated `[rao]` section.
#[derive(Clone, PartialEq, Eq)]
pub struct RaoConfig {
    pub id: String,
    pub credentials: RaoCredentials,
}

impl fmt::Debug for RaoConfig {
    // By hand: no token, password or PIN in any log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match &self.credentials {
            RaoCredentials::Token(_) => "token".to_owned(),
            RaoCredentials::Login { username, .. } => format!("login {username}"),
        };
        f.debug_struct("RaoConfig").field("id", &self.id).field("credentials", &how).finish()
    }
}

/// The validated `[signature]` section: the visible signature, sent in the shape of each
/// generation (old: `options: {uid: {position, page, image}}`; new: `signature.appearance`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureConfig {
    pub text: Vec<String>,
    pub date_format: Option<String>,
    pub timezone: Option<String>,
    /// `"x1,y1,x2,y2"` in PDF points.
    pub position: Option<String>,
    pub page: Option<i64>,
    /// A PNG shown in the signature box: uploaded (`POST /image`) before each sign call, which
    /// names it by the uid the server gave it.
    pub image: Option<PathBuf>,
}

/// Reads a secret file: `$CREDENTIALS_DIRECTORY/<file name>` when the unit provides it, else
/// `path` (resolved against the configuration's folder), which must be private to this user
/// ([`crate::fsutil::check_private`]).
pub fn read_secret(path: &Path, base_dir: &Path) -> Result<Secret, String> {
    if let (Some(dir), Some(name)) = (std::env::var_os("CREDENTIALS_DIRECTORY"), path.file_name()) {
        let candidate = Path::new(&dir).join(name);
        if candidate.is_file() {
            return read_nonempty(&candidate);
        }
    }
    let path = if path.is_absolute() { path.to_owned() } else { base_dir.join(path) };
    crate::fsutil::check_private(&path)?;
    read_nonempty(&path)
}

fn read_nonempty(path: &Path) -> Result<Secret, String> {
    let text = Secret::new(
        crate::fsutil::read_bounded_text(path, crate::fsutil::MAX_SECRET_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let trimmed = Secret::new(text.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.trim().is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(trimmed)
}

/// Validates `[rao]`: an id and either a token file or username + password and PIN files (read
/// later, with the configuration's other files).
pub fn validate_rao(
    raw: Option<RawRao>,
    base_dir: &Path,
    files: &mut super::Files,
    problem: &mut dyn FnMut(&str, String),
) -> Option<RaoConfig> {
    let r = raw?;
    let id = match r.id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            problem("rao.id", "is required when [rao] is present".into());
            String::new()
        }
    };
    // Each secret is read into its place in the credentials chosen here.
    let mut secret = |key: &'static str, path: &Path, place: fn(&mut RaoCredentials) -> Option<&mut Secret>| {
        let (path, base_dir) = (path.to_owned(), base_dir.to_owned());
        files.read(key, move |c| {
            let value = read_secret(&path, &base_dir)?;
            if let Some(slot) = c.rao.as_mut().and_then(|r| place(&mut r.credentials)) {
                *slot = value;
            }
            Ok(())
        });
    };
    let credentials = match (&r.token_file, &r.username, &r.password_file, &r.pin_file) {
        (Some(token), None, None, None) => {
            secret("rao.token_file", token, |c| match c {
                RaoCredentials::Token(t) => Some(t),
                RaoCredentials::Login { .. } => None,
            });
            RaoCredentials::Token(Secret::default())
        }
        (None, Some(username), Some(password), Some(pin)) => {
            secret("rao.password_file", password, |c| match c {
                RaoCredentials::Login { password, .. } => Some(password),
                RaoCredentials::Token(_) => None,
            });
            secret("rao.pin_file", pin, |c| match c {
                RaoCredentials::Login { pin, .. } => Some(pin),
                RaoCredentials::Token(_) => None,
            });
            RaoCredentials::Login { username: username.clone(), password: Secret::default(), pin: Secret::default() }
        }
        _ => {
            problem(
                "rao.token_file",
                "set either token_file, or username with password_file and pin_file (not both)".into(),
            );
            return None;
        }
    };
    Some(RaoConfig { id, credentials })
}

/// Validates `[signature]`.
pub fn validate_signature(
    raw: Option<RawSignature>,
    base_dir: &Path,
    problem: &mut dyn FnMut(&str, String),
) -> SignatureConfig {
    let s = raw.unwrap_or_default();
    if let Some(position) = &s.position {
        let ok = position.split(',').map(str::trim).map(str::parse::<f64>).filter(Result::is_ok).count() == 4
            && position.split(',').count() == 4;
        if !ok {
            problem("signature.position", format!("must be \"x1,y1,x2,y2\" (four numbers), not {position:?}"));
        }
    }
    if let Some(page) = s.page {
        // The API counts pages from 0 ([yaml] SignObject: "The first page starts at 0").
        if page < -1 {
            problem("signature.page", format!("must be a page index (0 the first, -1 the last), not {page}"));
        }
    }
    SignatureConfig {
        text: s.text.unwrap_or_default(),
        date_format: s.date_format,
        timezone: s.timezone,
        position: s.position,
        page: s.page,
        // Read (and checked to be a PNG) when it is uploaded, before a sign call.
        image: s.image.map(|p| if p.is_absolute() { p } else { base_dir.join(p) }),
    }
}
