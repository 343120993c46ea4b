//! Draw a QR code of the claim link in the terminal, two module rows per text line with
//! Unicode half blocks. Light modules are drawn as blocks and dark ones as blanks, which
//! reads correctly on the usual light-on-dark terminal; phone scanners accept it.

use qrcodegen::{QrCode, QrCodeEcc};

/// Quiet zone around the symbol, in modules.
const QUIET: i32 = 2;

/// The QR code of `text` as lines of text, or `None` if it is too long to encode.
pub fn render(text: &str) -> Option<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Low).ok()?;
    let size = qr.size();
    let light = |x: i32, y: i32| -> bool {
        if x < 0 || y < 0 || x >= size || y >= size {
            true
        } else {
            !qr.get_module(x, y)
        }
    };
    let mut out = String::new();
    let mut y = -QUIET;
    while y < size + QUIET {
        for x in -QUIET..size + QUIET {
            out.push(match (light(x, y), light(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_square_symbol_with_quiet_zone() {
        let text = render("https://studio.acedata.cloud/coding-bridge?code=ABC123").unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(lines[0].chars().all(|c| c == '█'));
    }
}
