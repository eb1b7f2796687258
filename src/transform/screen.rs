//! Screen sizes put into buckets (`bucket_screen`): `1512x982` becomes
//! `1440x900`, so that an uncommon screen no longer tells one visitor from
//! the others, and reports by screen class still work.

use super::Invalid;

/// Widths and heights of common screens, ascending: a size becomes the
/// largest at or below it, each dimension on its own.
const WIDTHS: [u32; 16] = [
    320, 360, 375, 390, 412, 768, 800, 1024, 1280, 1366, 1440, 1536, 1920, 2560, 3440, 3840,
];
const HEIGHTS: [u32; 13] = [
    480, 568, 640, 720, 768, 800, 900, 1024, 1080, 1200, 1440, 1600, 2160,
];

/// `WIDTHxHEIGHT` in its bucket.
pub fn bucket(text: &str) -> Result<String, Invalid> {
    let (width, height) = text.trim().split_once('x').ok_or(Invalid::NotAScreenSize)?;
    let dimension = |text: &str| -> Result<u32, Invalid> {
        let digits_only =
            !text.is_empty() && text.len() <= 6 && text.bytes().all(|b| b.is_ascii_digit());
        if !digits_only {
            return Err(Invalid::NotAScreenSize);
        }
        text.parse().map_err(|_| Invalid::NotAScreenSize)
    };
    let (width, height) = (dimension(width)?, dimension(height)?);
    let floor = |sizes: &[u32], value: u32| {
        sizes
            .iter()
            .rev()
            .find(|size| **size <= value)
            .copied()
            .unwrap_or(sizes[0])
    };
    Ok(format!(
        "{}x{}",
        floor(&WIDTHS, width),
        floor(&HEIGHTS, height)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_to_common_ones() {
        assert_eq!(bucket("1920x1080"), Ok("1920x1080".into()));
        assert_eq!(bucket("1512x982"), Ok("1440x900".into()));
        assert_eq!(bucket("393x852"), Ok("390x800".into()));
        assert_eq!(bucket("5120x2880"), Ok("3840x2160".into()));
        assert_eq!(bucket("100x100"), Ok("320x480".into()));
        for bad in [
            "",
            "1920",
            "1920x",
            "x1080",
            "19a0x1080",
            "-1x2",
            "9999999x1",
        ] {
            assert_eq!(bucket(bad), Err(Invalid::NotAScreenSize), "{bad}");
        }
    }
}
