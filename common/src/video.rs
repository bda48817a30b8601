//! What a probe of a clip found: the helper's `probe-video` prints it, `enroll` reads it.

/// The container, codec, size and duration of a playable video.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct VideoFacts {
    pub container: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub duration_secs: f64,
}

/// The environment variable that gives `probe-video` the key of a sealed spill (AES-128 key and
/// IV in hex, as FFmpeg's `crypto:` protocol takes them): its standard input is then that
/// sealed file, read in clear only inside FFmpeg.
pub const SEALED_KEY_VAR: &str = "KIOSK_AGENT_SEALED_KEY";

/// Whether `hex` has the form of a sealed spill's key: 64 hex digits (AES-128 key and IV), in
/// the environment of `probe-video` or the request to a standby alike.
pub fn is_sealed_key(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The standby prober's socket in the data directory. `kiosk-agent run` listens on it and keeps
/// a `probe-standby` helper waiting on it, FFmpeg already loaded, so that `enroll` (and the
/// API's intake) need not start a process that links a hundred libraries for each video.
pub const STANDBY_SOCKET: &str = "probe.sock";

/// The environment variable that gives a standby its daemon's pid: a standby whose daemon
/// died before it could follow it (while it was still linking FFmpeg) exits instead of waiting
/// forever.
pub const STANDBY_PARENT_VAR: &str = "KIOSK_AGENT_STANDBY_PARENT";

/// The longest request line (`probe sealed ` and 64 hex digits, with room to spare).
const MAX_REQUEST: usize = 128;

/// A standby's answer, one JSON line: the facts, or the reason the video is refused (the same
/// words `probe-video` prints as its error).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeAnswer {
    Facts(VideoFacts),
    Refused(String),
}

/// Sends a probe request: the open file itself (`SCM_RIGHTS`, so the standby reads the very
/// file that was checked, never a path that could have been swapped) and, for a sealed spill,
/// its key.
pub fn send_probe_request(
    stream: &std::os::unix::net::UnixStream,
    file: &std::fs::File,
    sealed_hex: Option<&str>,
) -> std::io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::os::fd::AsFd as _;
    let line = match sealed_hex {
        Some(hex) => format!("probe sealed {hex}\n"),
        None => "probe\n".to_owned(),
    };
    let fds = [file.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let sent = sendmsg(stream, &[std::io::IoSlice::new(line.as_bytes())], &mut control, SendFlags::NOSIGNAL)?;
    if sent != line.len() {
        return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "probe request cut short"));
    }
    Ok(())
}

/// Receives a probe request (see [`send_probe_request`]): the file and the sealed key, if any.
/// The stream's read timeout bounds the wait.
pub fn receive_probe_request(
    stream: &std::os::unix::net::UnixStream,
) -> Result<(std::os::fd::OwnedFd, Option<String>), String> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = [0u8; MAX_REQUEST];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(stream, &mut [std::io::IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| format!("no probe request received ({e})"))?;
    let mut file = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            // One file is asked for; any more are closed as they drop.
            for fd in fds {
                file.get_or_insert(fd);
            }
        }
    }
    let line = std::str::from_utf8(&buf[..received.bytes]).map_err(|_| "the probe request is not text".to_owned())?;
    let Some(line) = line.strip_suffix('\n') else {
        return Err("the probe request must be one line, sent at once".into());
    };
    let sealed = match line.split_once(' ') {
        None if line == "probe" => None,
        Some(("probe", rest)) => match rest.strip_prefix("sealed ") {
            Some(hex) if is_sealed_key(hex) => Some(hex.to_owned()),
            _ => return Err("a sealed probe request must give 64 hex digits (AES-128 key and IV)".into()),
        },
        _ => return Err(format!("unknown probe request {:?}", line.chars().take(40).collect::<String>())),
    };
    let file = file.ok_or_else(|| "the probe request carried no file".to_owned())?;
    Ok((file, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek as _, Write as _};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_request_carries_the_open_file_and_the_key() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"the very file").unwrap();
        file.rewind().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let key = "0123456789abcdef".repeat(4);
        send_probe_request(&a, &file, Some(&key)).unwrap();
        let (fd, sealed) = receive_probe_request(&b).unwrap();
        assert_eq!(sealed.as_deref(), Some(key.as_str()));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).unwrap();
        assert_eq!(text, "the very file");
        send_probe_request(&a, &file, None).unwrap();
        assert_eq!(receive_probe_request(&b).unwrap().1, None);
    }

    #[test]
    fn a_request_without_a_file_or_with_a_bad_key_is_refused_by_name() {
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"probe\n").unwrap();
        assert_eq!(receive_probe_request(&b).unwrap_err(), "the probe request carried no file");
        let file = tempfile::tempfile().unwrap();
        send_probe_request(&a, &file, Some("xyz")).unwrap();
        assert!(receive_probe_request(&b).unwrap_err().contains("64 hex digits"));
        std::io::Write::write_all(&mut &a, b"delete everything\n").unwrap();
        assert!(receive_probe_request(&b).unwrap_err().starts_with("unknown probe request"));
    }

    #[test]
    fn an_answer_is_one_tagged_json_line() {
        let refused = ProbeAnswer::Refused("has no video stream".into());
        let text = serde_json::to_string(&refused).unwrap();
        assert_eq!(text, r#"{"refused":"has no video stream"}"#);
        assert_eq!(serde_json::from_str::<ProbeAnswer>(&text).unwrap(), refused);
    }
}
