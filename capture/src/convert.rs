//! Pixel-format conversion with swscale, MJPEG decoding, and crops.
//!
//! Frames keep the layout their source delivered; conversion happens once, where a consumer
//! needs another layout (the encoder wants YUV420P, metrics want luma, JPEG wants YUVJ420P).

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::{codec, decoder, frame, Packet};

use crate::{CaptureError, Frame, PixelFormat};

/// FFmpeg's name for a raw layout (`None` for MJPEG, which must be decoded).
pub fn av_pixel(format: PixelFormat) -> Option<Pixel> {
    match format {
        PixelFormat::Rgb24 => Some(Pixel::RGB24),
        PixelFormat::Yuv420p => Some(Pixel::YUV420P),
        PixelFormat::Yuyv => Some(Pixel::YUYV422),
        PixelFormat::Nv12 => Some(Pixel::NV12),
        PixelFormat::Gray8 => Some(Pixel::GRAY8),
        PixelFormat::Mjpeg => None,
    }
}

/// Our layout for an FFmpeg pixel format, when we carry it natively.
pub fn from_av_pixel(pixel: Pixel) -> Option<PixelFormat> {
    match pixel {
        Pixel::RGB24 => Some(PixelFormat::Rgb24),
        Pixel::YUV420P => Some(PixelFormat::Yuv420p),
        Pixel::YUYV422 => Some(PixelFormat::Yuyv),
        Pixel::NV12 => Some(PixelFormat::Nv12),
        Pixel::GRAY8 => Some(PixelFormat::Gray8),
        _ => None,
    }
}

/// (bytes per row, rows) of each plane of a raw layout.
pub(crate) fn planes(format: PixelFormat, w: usize, h: usize) -> Vec<(usize, usize)> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    match format {
        PixelFormat::Rgb24 => vec![(w * 3, h)],
        PixelFormat::Yuv420p => vec![(w, h), (cw, ch), (cw, ch)],
        PixelFormat::Yuyv => vec![(w * 2, h)],
        PixelFormat::Nv12 => vec![(w, h), (cw * 2, ch)],
        PixelFormat::Gray8 => vec![(w, h)],
        PixelFormat::Mjpeg => vec![],
    }
}

/// Bytes a raw frame of this layout and size occupies.
pub fn frame_len(format: PixelFormat, w: u32, h: u32) -> usize {
    planes(format, w as usize, h as usize).iter().map(|(row, rows)| row * rows).sum()
}

/// Copies a raw frame into an FFmpeg frame (decoding it first when it is MJPEG).
pub fn to_av(frame: &Frame) -> Result<frame::Video, CaptureError> {
    let Some(pixel) = av_pixel(frame.format) else {
        return decode_jpeg(&frame.data);
    };
    let expected = frame_len(frame.format, frame.width, frame.height);
    if frame.data.len() < expected {
        return Err(CaptureError::media(
            "frame",
            format!(
                "{} {}x{} needs {expected} bytes, got {}",
                frame.format.name(),
                frame.width,
                frame.height,
                frame.data.len()
            ),
        ));
    }
    let mut av = frame::Video::new(pixel, frame.width, frame.height);
    let mut offset = 0;
    for (i, (row, rows)) in planes(frame.format, frame.width as usize, frame.height as usize).into_iter().enumerate() {
        let stride = av.stride(i);
        let plane = av.data_mut(i);
        for r in 0..rows {
            plane[r * stride..r * stride + row].copy_from_slice(&frame.data[offset + r * row..offset + (r + 1) * row]);
        }
        offset += row * rows;
    }
    Ok(av)
}

/// Copies an FFmpeg frame of a natively carried layout into a contiguous [`Frame`].
pub fn from_av(av: &frame::Video, format: PixelFormat, index: u64, timestamp: std::time::Duration) -> Frame {
    let (w, h) = (av.width(), av.height());
    let mut data = Vec::with_capacity(frame_len(format, w, h));
    for (i, (row, rows)) in planes(format, w as usize, h as usize).into_iter().enumerate() {
        let stride = av.stride(i);
        let plane = av.data(i);
        for r in 0..rows {
            data.extend_from_slice(&plane[r * stride..r * stride + row]);
        }
    }
    Frame { width: w, height: h, format, index, timestamp, data }
}

/// Decodes one JPEG image.
pub fn decode_jpeg(bytes: &[u8]) -> Result<frame::Video, CaptureError> {
    crate::init_ffmpeg();
    let codec = decoder::find(codec::Id::MJPEG)
        .ok_or_else(|| CaptureError::media("JPEG decoder", "not available in this FFmpeg"))?;
    let mut dec = codec::context::Context::new_with_codec(codec)
        .decoder()
        .video()
        .map_err(|e| CaptureError::media("JPEG decoder", e))?;
    dec.send_packet(&Packet::copy(bytes)).map_err(|e| CaptureError::media("JPEG frame", e))?;
    dec.send_eof().map_err(|e| CaptureError::media("JPEG frame", e))?;
    let mut out = frame::Video::empty();
    dec.receive_frame(&mut out)
        .map_err(|e| CaptureError::media("JPEG frame", format!("not a decodable JPEG ({e})")))?;
    Ok(out)
}

/// A cached swscale context for one conversion (source layout and size → target).
pub struct Scaler {
    ctx: scaling::Context,
    key: (Pixel, u32, u32, Pixel, u32, u32),
}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler").field("key", &format_args!("{:?}", self.key)).finish()
    }
}

impl Scaler {
    /// Converts `src` to `pixel` at `w`×`h`, reusing this context when the shapes match.
    pub fn convert(
        slot: &mut Option<Scaler>,
        src: &frame::Video,
        pixel: Pixel,
        w: u32,
        h: u32,
    ) -> Result<frame::Video, CaptureError> {
        let key = (src.format(), src.width(), src.height(), pixel, w, h);
        if slot.as_ref().is_none_or(|s| s.key != key) {
            let ctx = scaling::Context::get(key.0, key.1, key.2, pixel, w, h, scaling::Flags::BILINEAR)
                .map_err(|e| CaptureError::media("pixel conversion", format!("{:?} → {:?}: {e}", key.0, pixel)))?;
            *slot = Some(Scaler { ctx, key });
        }
        let scaler = slot.as_mut().expect("set above");
        let mut out = frame::Video::empty();
        scaler.ctx.run(src, &mut out).map_err(|e| CaptureError::media("pixel conversion", e))?;
        Ok(out)
    }
}

/// Converts a frame to another raw layout (and size), through swscale.
pub fn convert(frame: &Frame, format: PixelFormat, w: u32, h: u32) -> Result<Frame, CaptureError> {
    if frame.format == format && frame.width == w && frame.height == h {
        return Ok(frame.clone());
    }
    let pixel = av_pixel(format)
        .ok_or_else(|| CaptureError::media("pixel conversion", "MJPEG output needs the JPEG encoder"))?;
    let av = to_av(frame)?;
    let out = Scaler::convert(&mut None, &av, pixel, w, h)?;
    Ok(from_av(&out, format, frame.index, frame.timestamp))
}

/// Full-range luma of a frame, one byte a pixel (what the quality metrics look at).
pub fn luma(frame: &Frame) -> Result<Vec<u8>, CaptureError> {
    let av = to_av(frame)?;
    let out = Scaler::convert(&mut None, &av, Pixel::GRAY8, av.width(), av.height())?;
    Ok(from_av(&out, PixelFormat::Gray8, frame.index, frame.timestamp).data)
}

/// A rectangle of a raw RGB24 frame (other layouts are converted first).
pub fn crop(frame: &Frame, x: u32, y: u32, w: u32, h: u32) -> Result<Frame, CaptureError> {
    if x + w > frame.width || y + h > frame.height || w == 0 || h == 0 {
        return Err(CaptureError::media(
            "crop",
            format!("{w}x{h}+{x}+{y} is outside {}x{}", frame.width, frame.height),
        ));
    }
    let rgb = convert(frame, PixelFormat::Rgb24, frame.width, frame.height)?;
    let stride = rgb.width as usize * 3;
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for row in y..y + h {
        let start = row as usize * stride + x as usize * 3;
        data.extend_from_slice(&rgb.data[start..start + w as usize * 3]);
    }
    Ok(Frame { width: w, height: h, format: PixelFormat::Rgb24, index: frame.index, timestamp: frame.timestamp, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Synthetic;
    use crate::FrameSource;

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64).sum::<f64>() / a.len() as f64
    }

    #[test]
    fn every_layout_round_trips_through_swscale() {
        crate::init_ffmpeg();
        let rgb = Synthetic::new(320, 240, 30).unwrap().unpaced().next_frame().unwrap().unwrap();
        for format in [PixelFormat::Yuv420p, PixelFormat::Yuyv, PixelFormat::Nv12] {
            let there = convert(&rgb, format, 320, 240).unwrap();
            assert_eq!(there.data.len(), frame_len(format, 320, 240), "{format:?}");
            let back = convert(&there, PixelFormat::Rgb24, 320, 240).unwrap();
            let diff = mean_abs_diff(&rgb.data, &back.data);
            assert!(diff < 6.0, "{format:?} round trip differs by {diff}");
            // The stamp survives every layout.
            assert_eq!(Synthetic::read_stamp(&luma(&there).unwrap(), 320).0, 0);
        }
        let jpeg = crate::jpeg::encode(&rgb, 90).unwrap();
        let mjpeg = Frame { format: PixelFormat::Mjpeg, data: jpeg, ..rgb.clone() };
        let back = convert(&mjpeg, PixelFormat::Rgb24, 320, 240).unwrap();
        assert!(mean_abs_diff(&rgb.data, &back.data) < 8.0);
    }

    #[test]
    fn crops_take_the_rectangle() {
        let rgb = Synthetic::new(320, 240, 30).unwrap().unpaced().next_frame().unwrap().unwrap();
        let c = crop(&rgb, 10, 20, 30, 40).unwrap();
        assert_eq!((c.width, c.height, c.data.len()), (30, 40, 30 * 40 * 3));
        assert_eq!(&c.data[..3], &rgb.data[(20 * 320 + 10) * 3..(20 * 320 + 10) * 3 + 3]);
        assert!(crop(&rgb, 300, 0, 30, 10).is_err());
    }
}
