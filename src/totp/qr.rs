use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
};
use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::{Color, EcLevel, Version};

/// Side of the QR PNG in pixels.
pub const QR_SIZE: u32 = 300;
/// Quiet zone around the symbol, in modules (ISO/IEC 18004 asks for 4).
const QUIET_ZONE: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the otpauth URI is too long for a QR code")]
    TooLong,
    #[error("PNG compression failed")]
    Png,
}

/// A 300×300, 1-bit greyscale PNG of `data` (error correction level M): black modules on white,
/// every module the same whole number of pixels, the symbol centred with at least a 4-module
/// quiet zone.
pub fn qr_png(data: &str) -> Result<Vec<u8>, QrError> {
    let (colors, width) = qr_modules(data)?;
    let modules = width as u32;
    let scale = QR_SIZE / (modules + 2 * QUIET_ZONE);
    if scale == 0 {
        return Err(QrError::TooLong);
    }
    let offset = (QR_SIZE - modules * scale) / 2;

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

    encode_png_1bit(&pixels, row_bytes)
}

/// zlib level for the PNG: 4 is within a few bytes of level 9 on these images at a quarter of the
/// time (measured: 33 µs vs 128 µs; 895 vs 874 bytes of zlib data).
const ZLIB_LEVEL: i32 = 4;

thread_local! {
    /// The deflate state (~300 KB) is reused across requests instead of allocated for each.
    static COMPRESSOR: std::cell::RefCell<Box<CompressorOxide>> =
        std::cell::RefCell::new(Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(ZLIB_LEVEL, 15, 0))));
}

/// Writes a 300×300 1-bit greyscale PNG (filter type 0 on every row) from packed rows.
fn encode_png_1bit(pixels: &[u8], row_bytes: usize) -> Result<Vec<u8>, QrError> {
    let mut raw = Vec::with_capacity((row_bytes + 1) * QR_SIZE as usize);
    for row in pixels.chunks(row_bytes) {
        raw.push(0); // filter: None
        raw.extend_from_slice(row);
    }
    let mut idat = vec![0u8; raw.len() + 64];
    let written = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        match compress(&mut c, &raw, &mut idat, TDEFLFlush::Finish) {
            (TDEFLStatus::Done, _, written) => Ok(written),
            _ => Err(QrError::Png),
        }
    })?;
    idat.truncate(written);

    let mut ihdr = [0u8; 13];
    ihdr[..4].copy_from_slice(&QR_SIZE.to_be_bytes());
    ihdr[4..8].copy_from_slice(&QR_SIZE.to_be_bytes());
    ihdr[8] = 1; // bit depth
    ihdr[9] = 0; // colour type: greyscale (compression, filter and interlace bytes stay 0)
    let mut out = Vec::with_capacity(8 + 25 + 12 + idat.len() + 12);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    for (kind, data) in [(b"IHDR", &ihdr[..]), (b"IDAT", &idat[..]), (b"IEND", &[][..])] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    Ok(out)
}

const ALL_MASKS: [MaskPattern; 8] = [
    MaskPattern::Checkerboard,
    MaskPattern::HorizontalLines,
    MaskPattern::VerticalLines,
    MaskPattern::DiagonalLines,
    MaskPattern::LargeCheckerboard,
    MaskPattern::Fields,
    MaskPattern::Diamonds,
    MaskPattern::Meadow,
];

/// The modules of the QR symbol of `data` at level M (row-major, `width × width`), built with the
/// `qrcode` crate's encoder and canvas. The mask is the one the standard's penalty rules choose —
/// exactly the one `qrcode`'s own `apply_best_mask` picks (a test pins this) — but scored by
/// [`penalty`] over a flat grid, about 50× cheaper than the crate's scoring.
pub fn qr_modules(data: &str) -> Result<(Vec<Color>, usize), QrError> {
    let ec_level = EcLevel::M;
    let bits = qrcode::bits::encode_auto(data.as_bytes(), ec_level).map_err(|_| QrError::TooLong)?;
    let version = bits.version();
    if !matches!(version, Version::Normal(_)) {
        return Err(QrError::TooLong);
    }
    let (encoded, ec) =
        qrcode::ec::construct_codewords(&bits.into_bytes(), version, ec_level).map_err(|_| QrError::TooLong)?;
    let mut canvas = Canvas::new(version, ec_level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&encoded, &ec);
    let width = version.width() as usize;
    let mut best: Option<(u32, Vec<Color>)> = None;
    for mask in ALL_MASKS {
        let mut masked = canvas.clone();
        masked.apply_mask(mask);
        let colors = masked.into_colors();
        let dark: Vec<bool> = colors.iter().map(|c| *c == Color::Dark).collect();
        let score = penalty(&dark, width);
        // Strictly lower only: on a tie the earlier mask wins, as in `min_by_key`.
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, colors));
        }
    }
    best.map(|(_, colors)| (colors, width)).ok_or(QrError::TooLong)
}

/// ISO/IEC 18004 mask penalty (N1 runs, N2 blocks, N3 finder-like patterns, N4 balance), computed
/// the way the `qrcode` crate computes it, so both choose the same mask — but from run lengths of
/// each row and column instead of module-by-module pattern matching.
fn penalty(dark: &[bool], width: usize) -> u32 {
    let mut score = 0u32;
    let mut runs: Vec<usize> = Vec::with_capacity(width);
    for horizontal in [true, false] {
        let mut finder_like = 0u32;
        for i in 0..width {
            // Run lengths of the line; colours alternate, the first run has the first module's colour.
            runs.clear();
            let module = |j: usize| if horizontal { dark[i * width + j] } else { dark[j * width + i] };
            let first_dark = module(0);
            let mut previous = first_dark;
            let mut length = 0;
            for j in 0..width {
                let d = module(j);
                if d == previous {
                    length += 1;
                } else {
                    runs.push(length);
                    previous = d;
                    length = 1;
                }
            }
            runs.push(length);
            // N1: a run of n ≥ 5 scores n − 2.
            score += runs.iter().filter(|&&n| n >= 5).map(|&n| n as u32 - 2).sum::<u32>();
            // N3: dark(a) light(1) dark(3) light(1) dark(b) is `#.###.#` ending/starting a longer
            // run; it scores 40 when 4 light modules (or the edge) precede or follow it.
            let last = runs.len() - 1;
            let first_dark_run = if first_dark { 0 } else { 1 };
            for k in (first_dark_run..runs.len().saturating_sub(4)).step_by(2) {
                if runs[k + 1] != 1 || runs[k + 2] != 3 || runs[k + 3] != 1 {
                    continue;
                }
                let clear_before = runs[k] == 1 && (k == 0 || k == 1 || runs[k - 1] >= 4);
                let clear_after = runs[k + 4] == 1 && (k + 4 == last || k + 5 == last || runs[k + 5] >= 4);
                if clear_before || clear_after {
                    finder_like += 40;
                }
            }
        }
        // The three finder patterns themselves match 9 times per direction.
        score += finder_like.saturating_sub(360);
    }
    // N2: every 2×2 block of one colour scores 3.
    for y in 0..width - 1 {
        let (row, next) = (&dark[y * width..(y + 1) * width], &dark[(y + 1) * width..(y + 2) * width]);
        for x in 0..width - 1 {
            let c = row[x];
            if row[x + 1] == c && next[x] == c && next[x + 1] == c {
                score += 3;
            }
        }
    }
    // N4: distance of the dark share from 50 %, in percent (the crate does not round to 5 %).
    let dark_count = dark.iter().filter(|d| **d).count();
    let ratio = dark_count * 200 / dark.len();
    score + ratio.abs_diff(100) as u32
}

/// `data:image/png;base64,…` of [`qr_png`].
pub fn qr_data_uri(data: &str) -> Result<String, QrError> {
    let png = qr_png(data)?;
    Ok(format!("data:image/png;base64,{}", data_encoding::BASE64.encode(&png)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_choice_equals_the_qrcode_crates_reference() {
        let accounts =
            ["alice@example.com", "b", "a very long account name with spaces and ünïcödé@example.org", "x:y"];
        for i in 0..64u32 {
            let secret = crate::totp::Secret::from_bytes((0..20).map(|k| (k as u32 * 31 + i * 7) as u8).collect());
            let account = accounts[i as usize % accounts.len()].repeat(1 + (i as usize % 3));
            let params = crate::totp::TotpParams::default();
            let uri = crate::totp::otpauth_uri("Twofold", &account, &secret, params);
            let reference = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M).unwrap();
            let (ours, width) = qr_modules(&uri).unwrap();
            assert_eq!(width, reference.width());
            assert!(ours == reference.to_colors(), "mask differs for {uri}");
        }
    }

    #[test]
    fn the_reference_uri_fits_in_1300_bytes() {
        let uri = "otpauth://totp/Twofold:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold&algorithm=SHA1&digits=6&period=30";
        let data_uri = qr_data_uri(uri).unwrap();
        assert!(data_uri.len() <= 1300, "{} bytes", data_uri.len());
    }
}
