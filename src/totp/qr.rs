use qrcode::{Color, EcLevel, QrCode};

/// Side of the QR PNG in pixels.
pub const QR_SIZE: u32 = 300;
/// Quiet zone around the symbol, in modules (ISO/IEC 18004 asks for 4).
const QUIET_ZONE: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the otpauth URI is too long for a QR code")]
    TooLong,
    #[error("PNG encoding failed")]
    Png,
}

/// A 300×300, 1-bit greyscale PNG of `data` (error correction level M): black modules on white,
/// every module the same whole number of pixels, the symbol centred with at least a 4-module
/// quiet zone.
pub fn qr_png(data: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .map_err(|_| QrError::TooLong)?;
    let modules = code.width() as u32;
    let scale = QR_SIZE / (modules + 2 * QUIET_ZONE);
    if scale == 0 {
        return Err(QrError::TooLong);
    }
    let offset = (QR_SIZE - modules * scale) / 2;
    let colors = code.to_colors();

    // 1 bit per pixel, most significant bit first; 1 = white.
    let row_bytes = QR_SIZE.div_ceil(8) as usize;
    let mut pixels = vec![0xFFu8; row_bytes * QR_SIZE as usize];
    for my in 0..modules {
        for mx in 0..modules {
            if colors[(my * modules + mx) as usize] != Color::Dark {
                continue;
            }
            for py in offset + my * scale..offset + (my + 1) * scale {
                let row = &mut pixels[py as usize * row_bytes..(py as usize + 1) * row_bytes];
                for px in offset + mx * scale..offset + (mx + 1) * scale {
                    row[(px / 8) as usize] &= !(0x80 >> (px % 8));
                }
            }
        }
    }

    let mut out = Vec::with_capacity(1024);
    let mut encoder = png::Encoder::new(&mut out, QR_SIZE, QR_SIZE);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(|_| QrError::Png)?;
    writer.write_image_data(&pixels).map_err(|_| QrError::Png)?;
    writer.finish().map_err(|_| QrError::Png)?;
    Ok(out)
}

/// `data:image/png;base64,…` of [`qr_png`].
pub fn qr_data_uri(data: &str) -> Result<String, QrError> {
    let png = qr_png(data)?;
    Ok(format!(
        "data:image/png;base64,{}",
        data_encoding::BASE64.encode(&png)
    ))
}
