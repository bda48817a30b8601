//! Content checks by magic bytes: an image is a JPEG or PNG and a video an ISO-BMFF file because
//! of what is in them, never because of their file name.

use std::io::Read;

/// What an artifact really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Jpeg,
    Png,
    Mp4,
}

impl MediaKind {
    /// The MIME type sent to, and recorded for, the server.
    pub fn mime(self) -> &'static str {
        match self {
            MediaKind::Jpeg => "image/jpeg",
            MediaKind::Png => "image/png",
            MediaKind::Mp4 => "video/mp4",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Jpeg => "jpeg",
            MediaKind::Png => "png",
            MediaKind::Mp4 => "mp4",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jpeg" => Some(MediaKind::Jpeg),
            "png" => Some(MediaKind::Png),
            "mp4" => Some(MediaKind::Mp4),
            _ => None,
        }
    }
}

fn head(reader: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    reader.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// JPEG: SOI marker followed by another marker. PNG: the 8-byte signature and an IHDR chunk.
pub fn sniff_image(reader: &mut impl Read) -> std::io::Result<Option<MediaKind>> {
    let h = head(reader, 16)?;
    if h.len() >= 4 && h[..3] == [0xFF, 0xD8, 0xFF] {
        return Ok(Some(MediaKind::Jpeg));
    }
    if h.len() >= 16 && h[..8] == *b"\x89PNG\r\n\x1a\n" && &h[12..16] == b"IHDR" {
        return Ok(Some(MediaKind::Png));
    }
    Ok(None)
}

/// ISO-BMFF (MP4): the first box is `ftyp` with a sane size.
pub fn sniff_video(reader: &mut impl Read) -> std::io::Result<Option<MediaKind>> {
    let h = head(reader, 12)?;
    if h.len() == 12 && &h[4..8] == b"ftyp" {
        let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if (12..=1024).contains(&size) {
            return Ok(Some(MediaKind::Mp4));
        }
    }
    Ok(None)
}
