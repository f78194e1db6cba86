//! Renders the reference otpauth URI's QR data URI N times (default 100): a fixed workload for
//! `valgrind --tool=callgrind` instruction counts (see bench/README.md).
fn main() {
    let uri = "otpauth://totp/Twofold:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Twofold&algorithm=SHA1&digits=6&period=30";
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut bytes = 0;
    for _ in 0..n {
        bytes = twofold::totp::qr_data_uri(uri).expect("QR").len();
    }
    println!("{n} QR data URIs of {bytes} bytes");
}
