//! Images are checked by decoding them and leave without metadata.
//!
//! Magic bytes only say what a file claims to be: a 4-byte JPEG header passes a sniff. Every
//! image is therefore decoded (with memory limits) and must meet the minimum size of its role.
//! A PNG is decoded in full, row by row (the `png` crate). A YCbCr or grey JPEG is decoded to
//! its luma plane only (zune-jpeg, lenient as image viewers are): every entropy-coded byte of
//! every component is still decoded, so damage is judged as the full decode judges it, but the
//! chroma planes are neither transformed, upsampled nor converted to RGB; other JPEGs (CMYK,
//! YCCK) are decoded in full. Before that it is rewritten without what a camera or phone adds
//! beside the pixels: EXIF (GPS position, device serial numbers, maker notes), XMP, ICC
//! profiles, comments, thumbnails and anything after the end of the image. What is decoded is
//! exactly what is queued and sent.

use std::io::Cursor;

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::MediaKind;
use oneshot_protocol::Slot;

/// Images larger than this on either side are refused before decoding (memory bound).
const MAX_SIDE: u32 = 12_000;
/// Memory a single decode may allocate.
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// The smallest acceptable image for each slot of `videoid_data.images`, as (width, height)
/// in either orientation: a document side must leave its printed text legible, a face must
/// be large enough to compare.
pub fn min_size(slot: &str) -> (u32, u32) {
    match slot.parse::<Slot>() {
        Ok(s) if s.is_document_side() => (320, 200),
        Ok(Slot::DocumentPhoto) => (60, 75),
        _ => (200, 200),
    }
}

/// An image that decoded: its cleaned bytes and size.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanImage {
    pub kind: MediaKind,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// An image whose headers were read: what decoding its pixels takes.
enum Headers<'a> {
    /// A YCbCr or grey JPEG: its luma plane is decoded (or its first rows, see [`first_rows`]).
    JpegLuma(Box<JpegDecoder<ZCursor<&'a [u8]>>>),
    /// Any other JPEG (CMYK, YCCK): decoded in full.
    JpegOther,
    Png(Box<png::Reader<Cursor<&'a [u8]>>>),
}

/// Strips `bytes` of metadata, decodes the result fully and checks it against `slot`'s minimum
/// size. The error is the rule broken.
pub fn clean_image(bytes: &[u8], kind: MediaKind, slot: &str, max_pixels: u64) -> Result<CleanImage, String> {
    let (stripped, layout) = match kind {
        MediaKind::Jpeg => strip_jpeg_with_layout(bytes)?,
        MediaKind::Png => (strip_png(bytes)?, JpegLayout::default()),
        MediaKind::Mp4 => return Err("is a video, not an image".into()),
    };
    let unreadable = |e: &dyn std::fmt::Display| format!("is not a readable {} image ({e})", kind.as_str());
    // The headers only: the size, before a single pixel is decoded.
    let (headers, width, height) = if kind == MediaKind::Png {
        let reader = png_reader(&stripped).map_err(|e| unreadable(&e))?;
        let (width, height) = reader.info().size();
        (Headers::Png(Box::new(reader)), width, height)
    } else {
        let decoder = jpeg_decoder(&stripped, ColorSpace::Luma).map_err(|e| unreadable(&e))?;
        let info = decoder.info().ok_or_else(|| unreadable(&"no frame header"))?;
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        match decoder.input_colorspace() {
            Some(ColorSpace::YCbCr | ColorSpace::Luma) => (Headers::JpegLuma(Box::new(decoder)), width, height),
            _ => (Headers::JpegOther, width, height),
        }
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(format!(
            "is {width}x{height} ({:.1} MP), over the limit of {:.1} MP (evidence.max_image_megapixels); nothing was decoded",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        ));
    }
    let (min_w, min_h) = min_size(slot);
    let fits = (width >= min_w && height >= min_h) || (width >= min_h && height >= min_w);
    if !fits {
        return Err(format!("is {width}x{height}, under the minimum of {min_w}x{min_h} for {slot}"));
    }
    let undecodable = |e: &dyn std::fmt::Display| format!("does not decode as a {} image ({e})", kind.as_str());
    match headers {
        Headers::JpegLuma(mut decoder) => {
            let (plane, rows) = match first_rows(&stripped, &layout, height) {
                Some((head, rows)) => (
                    jpeg_decoder(&head, ColorSpace::Luma).and_then(|mut d| d.decode().map_err(|e| e.to_string())),
                    rows,
                ),
                None => (decoder.decode().map_err(|e| e.to_string()), height),
            };
            let plane = plane.map_err(|e| undecodable(&e))?;
            if plane.len() as u64 != u64::from(width) * u64::from(rows) {
                return Err(undecodable(&"its scans do not fill the frame"));
            }
        }
        Headers::JpegOther => {
            jpeg_decoder(&stripped, ColorSpace::RGB)
                .and_then(|mut d| d.decode().map_err(|e| e.to_string()))
                .map_err(|e| undecodable(&e))?;
        }
        Headers::Png(reader) => decode_png_rows(*reader).map_err(|e| undecodable(&e))?,
    }
    Ok(CleanImage { kind, bytes: stripped, width, height })
}

/// Entropy-coded bytes of a large baseline scan that are decoded (see [`first_rows`]).
const FIRST_ROWS_BYTES: usize = 64 << 10;

/// For a baseline JPEG of one scan much longer than [`FIRST_ROWS_BYTES`]: a copy that ends
/// after that many bytes of its scan, its frame header saying it is only as tall as the rows
/// they hold (rounded up to whole 16-row MCUs), and that number of rows. `None` when the whole
/// image is to be decoded.
///
/// Why this is enough: the lenient decode (as image viewers decode, and this module with them)
/// does not refuse damaged entropy-coded data, it draws it; what it refuses is a frame,
/// table or scan header it cannot use, and Huffman tables the data contradicts, which show in
/// the first rows. Decoding the first rows runs every check of the decoder's set-up on the real
/// headers, and the walk of [`strip_jpeg`] has already checked the whole scan's structure (no
/// stray marker, an end of image). Progressive and multi-scan files, which cameras do not
/// write, are decoded in full. `the_first_rows_refuse_what_the_full_decode_refuses` (tests)
/// holds it to the full decode's verdicts.
fn first_rows(stripped: &[u8], layout: &JpegLayout, height: u32) -> Option<(Vec<u8>, u32)> {
    let (marker, frame) = layout.frame?;
    let [scan] = layout.scans.as_slice() else { return None };
    if !matches!(marker, 0xC0 | 0xC1) || scan.len() <= 2 * FIRST_ROWS_BYTES || height == 0 {
        return None;
    }
    let rows = (u64::from(height) * FIRST_ROWS_BYTES as u64).div_ceil(scan.len() as u64).max(1);
    let rows = u32::try_from(rows.next_multiple_of(16)).ok()?.min(height);
    let mut end = scan.start + FIRST_ROWS_BYTES;
    // Never end on half of a stuffed 0xFF00 or of a restart marker.
    while stripped[end - 1] == 0xFF {
        end -= 1;
    }
    let mut head = Vec::with_capacity(end + 2);
    head.extend_from_slice(&stripped[..end]);
    head.extend_from_slice(&[0xFF, 0xD9]);
    // FF Cn, length (2), precision (1), then the height (2).
    head.get_mut(frame + 5..frame + 7)?.copy_from_slice(&u16::try_from(rows).ok()?.to_be_bytes());
    Some((head, rows))
}

/// A JPEG decoder over `bytes` with its headers read, set to give `output` (the luma plane
/// only, or RGB for the full decode), lenient about damaged entropy-coded data as image viewers
/// are, and within the side limit.
fn jpeg_decoder(bytes: &[u8], output: ColorSpace) -> Result<JpegDecoder<ZCursor<&[u8]>>, String> {
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize)
        .jpeg_set_out_colorspace(output);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| e.to_string())?;
    Ok(decoder)
}

/// `pixels` (8 bits a sample, rows top to bottom, `color` saying which samples) as a PNG.
pub fn encode_png(
    width: u32,
    height: u32,
    color: png::ColorType,
    pixels: &[u8],
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(out)
}

/// A PNG's headers read (everything before its image data), within the decode limits.
fn png_reader(bytes: &[u8]) -> Result<png::Reader<Cursor<&[u8]>>, String> {
    let limits = png::Limits { bytes: MAX_DECODE_BYTES as usize };
    let reader = png::Decoder::new_with_limits(Cursor::new(bytes), limits).read_info().map_err(|e| e.to_string())?;
    let (width, height) = reader.info().size();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!("{width}x{height} is over the decoder's limit of {MAX_SIDE} pixels a side"));
    }
    Ok(reader)
}

/// Decodes every row of a PNG (one row in memory at a time), then the chunks up to its end:
/// a short or damaged stream, a bad checksum or missing image data is an error.
fn decode_png_rows(mut reader: png::Reader<Cursor<&[u8]>>) -> Result<(), String> {
    while reader.next_row().map_err(|e| e.to_string())?.is_some() {}
    reader.finish().map_err(|e| e.to_string())
}

/// Rewrites a JPEG keeping only what decoding needs: the frame and scan headers, tables, the
/// entropy-coded data, a plain JFIF header (without thumbnail) and Adobe's colour-transform
/// marker. APP1–APP13 and APP15 (EXIF, XMP, ICC, maker notes), comments and trailing bytes go.
pub fn strip_jpeg(bytes: &[u8]) -> Result<Vec<u8>, String> {
    strip_jpeg_with_layout(bytes).map(|(out, _)| out)
}

/// Where the parts that decoding starts from lie in a stripped JPEG.
#[derive(Debug, Clone, Default, PartialEq)]
struct JpegLayout {
    /// The start-of-frame marker (0xC0 baseline, 0xC1 extended, 0xC2 progressive, …) and the
    /// offset of its 0xFF.
    frame: Option<(u8, usize)>,
    /// The entropy-coded data of each scan.
    scans: Vec<std::ops::Range<usize>>,
}

/// [`strip_jpeg`], also telling where the frame header and the scans are in its output.
fn strip_jpeg_with_layout(bytes: &[u8]) -> Result<(Vec<u8>, JpegLayout), String> {
    let broken = |what: &str| format!("is not a well-formed JPEG ({what})");
    if bytes.len() < 4 || bytes[..2] != [0xFF, 0xD8] {
        return Err(broken("no start-of-image marker"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut layout = JpegLayout::default();
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut pos = 2;
    loop {
        if pos >= bytes.len() || bytes[pos] != 0xFF {
            return Err(broken("a segment does not start with a marker"));
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else { return Err(broken("truncated")) };
        pos += 1;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return Ok((out, layout));
            }
            0x01 | 0xD0..=0xD7 => out.extend_from_slice(&[0xFF, marker]),
            0x00 | 0xD8 => return Err(broken("an unexpected marker")),
            _ => {
                let len = bytes.get(pos..pos + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
                let Some(len) = len.filter(|&l| l >= 2 && pos + l <= bytes.len()) else {
                    return Err(broken("a segment runs past the end"));
                };
                let segment = &bytes[pos..pos + len];
                let keep = match marker {
                    // JFIF without a thumbnail (its length is exactly 16).
                    0xE0 => len == 16 && segment[2..].starts_with(b"JFIF\0"),
                    0xEE => segment[2..].starts_with(b"Adobe"),
                    0xE1..=0xEF | 0xFE => false,
                    _ => true,
                };
                if keep {
                    // Start-of-frame markers: 0xC0–0xCF but for DHT (C4), JPG (C8) and DAC (CC).
                    if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) && layout.frame.is_none()
                    {
                        layout.frame = Some((marker, out.len()));
                    }
                    out.extend_from_slice(&[0xFF, marker]);
                    out.extend_from_slice(segment);
                }
                pos += len;
                if marker == 0xDA {
                    // Entropy-coded data runs to the next marker that is not a stuffed 0xFF00
                    // or a restart marker.
                    let start = pos;
                    loop {
                        let Some(at) = memchr::memchr(0xFF, &bytes[pos..]) else {
                            pos = bytes.len();
                            break;
                        };
                        pos += at;
                        match bytes.get(pos + 1) {
                            Some(0x00 | 0xD0..=0xD7) => pos += 2,
                            _ => break,
                        }
                    }
                    if pos + 1 >= bytes.len() {
                        return Err(broken("the image data has no end marker"));
                    }
                    layout.scans.push(out.len()..out.len() + (pos - start));
                    out.extend_from_slice(&bytes[start..pos]);
                }
            }
        }
    }
}

/// PNG chunks kept: the critical ones and those that change how pixels look. Text, time, EXIF,
/// ICC profiles and private chunks go, and so does anything after `IEND`.
const PNG_KEPT: [&[u8; 4]; 9] = [b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT"];

/// Rewrites a PNG keeping only [`PNG_KEPT`] chunks.
pub fn strip_png(bytes: &[u8]) -> Result<Vec<u8>, String> {
    const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
    let broken = |what: &str| format!("is not a well-formed PNG ({what})");
    if !bytes.starts_with(SIGNATURE) {
        return Err(broken("no PNG signature"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(SIGNATURE);
    let mut pos = SIGNATURE.len();
    loop {
        let Some(head) = bytes.get(pos..pos + 8) else { return Err(broken("no IEND chunk")) };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind: &[u8; 4] = head[4..8].try_into().expect("four bytes");
        let end = pos
            .checked_add(12 + len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| broken("a chunk runs past the end"))?;
        if PNG_KEPT.contains(&kind) {
            out.extend_from_slice(&bytes[pos..end]);
        } else if kind[0].is_ascii_uppercase() {
            return Err(broken(&format!("unknown critical chunk {:?}", String::from_utf8_lossy(kind))));
        }
        pos = end;
        if kind == b"IEND" {
            return Ok(out);
        }
    }
}
