//! JPEG output: encoding through FFmpeg's MJPEG encoder, and metadata stripping.
//!
//! Evidence images must carry no EXIF or other metadata (camera serials, GPS, timestamps,
//! software tags). [`strip_metadata`] rewrites a JPEG keeping only what decoding needs: the
//! APP0 (JFIF) and APP14 (Adobe colour transform) headers and every non-APP marker, and copies
//! the entropy-coded data byte for byte.

use ffmpeg_next::format::Pixel;
use ffmpeg_next::{codec, encoder, frame, Packet};

use crate::convert::{to_av, Scaler};
use crate::{CaptureError, Frame};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const COM: u8 = 0xFE;
const APP0: u8 = 0xE0;
const APP14: u8 = 0xEE;

/// Maps a 1–100 quality to MJPEG's quantizer scale 1–31 (100 → 1, 90 → 4, 50 → 16, 1 → 31).
pub fn qscale(quality: u8) -> i32 {
    let q = quality.clamp(1, 100) as i32;
    (31 - ((q - 1) * 30 + 49) / 99).clamp(1, 31)
}

/// Encodes a frame as a baseline JPEG at `quality`, without metadata.
pub fn encode(frame: &Frame, quality: u8) -> Result<Vec<u8>, CaptureError> {
    crate::init_ffmpeg();
    let src = to_av(frame)?;
    let yuv = Scaler::convert(&mut None, &src, Pixel::YUVJ420P, frame.width, frame.height)?;
    encode_av(&yuv, quality)
}

fn encode_av(yuv: &frame::Video, quality: u8) -> Result<Vec<u8>, CaptureError> {
    let err = |e: ffmpeg_next::Error| CaptureError::media("JPEG encoder", e);
    let codec = encoder::find(codec::Id::MJPEG)
        .ok_or_else(|| CaptureError::media("JPEG encoder", "not available in this FFmpeg"))?;
    let mut enc = codec::context::Context::new_with_codec(codec).encoder().video().map_err(err)?;
    enc.set_width(yuv.width());
    enc.set_height(yuv.height());
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base((1, 25));
    // Fixed quantizer: the same scene always gives the same quality, whatever its complexity.
    // Pinning qmin = qmax = q does it without touching the frame's `quality` field, which
    // ffmpeg-next exposes read-only.
    enc.set_flags(codec::Flags::QSCALE | codec::Flags::BITEXACT);
    let q = qscale(quality);
    enc.set_qmin(q);
    enc.set_qmax(q);
    enc.set_global_quality(q * ffmpeg_next::ffi::FF_QP2LAMBDA);
    let mut enc = enc.open_as(codec).map_err(err)?;
    let mut input = yuv.clone();
    input.set_pts(Some(0));
    enc.send_frame(&input).map_err(err)?;
    enc.send_eof().map_err(err)?;
    let mut packet = Packet::empty();
    enc.receive_packet(&mut packet).map_err(err)?;
    let bytes = packet.data().ok_or_else(|| CaptureError::media("JPEG encoder", "produced no data"))?;
    strip_metadata(bytes)
}

/// One header segment: its marker and the byte range of the whole segment.
type Segment = (u8, std::ops::Range<usize>);

/// The segments of a JPEG up to its scan, and where the scan starts.
fn segments(jpeg: &[u8]) -> Result<(Vec<Segment>, usize), CaptureError> {
    let bad = |why: &str| CaptureError::media("JPEG", why);
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != SOI {
        return Err(bad("does not start with SOI"));
    }
    let mut out = Vec::new();
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while i < jpeg.len() && jpeg[i] == 0xFF && jpeg.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if i + 4 > jpeg.len() || jpeg[i] != 0xFF {
            return Err(bad("truncated or malformed before the scan"));
        }
        let marker = jpeg[i + 1];
        if marker == EOI {
            return Err(bad("ends before any scan"));
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if len < 2 || i + 2 + len > jpeg.len() {
            return Err(bad("segment length runs past the end"));
        }
        out.push((marker, i..i + 2 + len));
        i += 2 + len;
        if marker == SOS {
            return Ok((out, i));
        }
    }
}

/// Keeps the decoding-relevant headers and the image data; drops EXIF (APP1), XMP, ICC, IPTC
/// (APP13), comments and every other application segment.
pub fn strip_metadata(jpeg: &[u8]) -> Result<Vec<u8>, CaptureError> {
    let (segs, scan) = segments(jpeg)?;
    let mut out = Vec::with_capacity(jpeg.len());
    out.extend_from_slice(&[0xFF, SOI]);
    for (marker, range) in segs {
        let is_app = (APP0..=0xEF).contains(&marker);
        if marker == COM || (is_app && marker != APP0 && marker != APP14) {
            continue;
        }
        out.extend_from_slice(&jpeg[range]);
    }
    out.extend_from_slice(&jpeg[scan..]);
    Ok(out)
}

/// The application and comment markers present before the scan (for tests and audits).
pub fn metadata_markers(jpeg: &[u8]) -> Result<Vec<u8>, CaptureError> {
    Ok(segments(jpeg)?.0.into_iter().map(|(m, _)| m).filter(|m| (APP0..=0xEF).contains(m) || *m == COM).collect())
}

/// The entropy-coded data and everything after it (what pass-through must keep unchanged).
pub fn scan_data(jpeg: &[u8]) -> Result<&[u8], CaptureError> {
    let (segs, scan) = segments(jpeg)?;
    let sos = segs.last().map(|(_, r)| r.start).unwrap_or(scan);
    Ok(&jpeg[sos..])
}

/// Helpers shared by this crate's tests.
#[cfg(test)]
pub(crate) mod tests_support {
    /// Inserts an EXIF (APP1) segment and a comment after SOI, as a camera would.
    pub fn with_exif(jpeg: &[u8]) -> Vec<u8> {
        let exif = b"Exif\0\0MM\0*\0\0\0\x08camera-serial-1234 GPS 41.38N 2.17E";
        let mut out = vec![0xFF, super::SOI, 0xFF, 0xE1];
        out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(exif);
        out.extend_from_slice(&[0xFF, super::COM, 0x00, 0x07]);
        out.extend_from_slice(b"hello");
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::with_exif;
    use super::*;
    use crate::synthetic::Synthetic;
    use crate::FrameSource;

    #[test]
    fn quality_maps_to_qscale() {
        assert_eq!([qscale(100), qscale(90), qscale(50), qscale(1)], [1, 4, 16, 31]);
    }

    #[test]
    fn encoded_jpegs_carry_no_metadata_and_decode() {
        let frame = Synthetic::new(320, 240, 30).unwrap().unpaced().next_frame().unwrap().unwrap();
        let jpeg = encode(&frame, 90).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, SOI]);
        let markers = metadata_markers(&jpeg).unwrap();
        assert!(markers.iter().all(|m| *m == APP0 || *m == APP14), "{markers:x?}");
        let decoded = crate::convert::decode_jpeg(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 240));
        // Higher quality, more bytes.
        assert!(encode(&frame, 100).unwrap().len() > encode(&frame, 30).unwrap().len());
    }

    #[test]
    fn stripping_removes_exif_and_keeps_the_image_bytes() {
        let frame = Synthetic::new(320, 240, 30).unwrap().unpaced().next_frame().unwrap().unwrap();
        let clean = encode(&frame, 90).unwrap();
        let tagged = with_exif(&clean);
        assert!(metadata_markers(&tagged).unwrap().contains(&0xE1));
        let stripped = strip_metadata(&tagged).unwrap();
        assert!(!metadata_markers(&stripped).unwrap().contains(&0xE1));
        assert!(!stripped.windows(13).any(|w| w == b"camera-serial"));
        assert_eq!(scan_data(&stripped).unwrap(), scan_data(&tagged).unwrap());
        assert_eq!(stripped, clean);
        assert!(strip_metadata(b"not a jpeg").is_err());
    }
}
