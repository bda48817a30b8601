//! The sandbox's own content checks, written from the file formats rather than shared with the
//! agent: an independent server must not accept a file just because the agent's checks did.

/// JPEG (SOI followed by a marker) or PNG (signature and IHDR).
pub fn is_image(bytes: &[u8]) -> bool {
    let jpeg = bytes.len() >= 4 && bytes[..3] == [0xFF, 0xD8, 0xFF];
    let png = bytes.len() >= 16 && bytes[..8] == *b"\x89PNG\r\n\x1a\n" && &bytes[12..16] == b"IHDR";
    jpeg || png
}

/// ISO-BMFF: the first box is `ftyp` with a plausible size.
pub fn is_mp4(head: &[u8]) -> bool {
    head.len() >= 12
        && &head[4..8] == b"ftyp"
        && (12..=1024).contains(&u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
}

/// The image slots of `UploadData_VID`.
pub const IMAGE_NAMES: [&str; 4] = oneshot_protocol::Slot::NAMES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert!(is_image(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(is_image(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"));
        assert!(!is_image(b"GIF89a.........."));
        assert!(is_mp4(b"\0\0\0\x18ftypisom"));
        assert!(!is_mp4(b"\0\0\0\x08ftypisom"));
        assert!(!is_mp4(b"RIFF....AVI "));
    }
}
