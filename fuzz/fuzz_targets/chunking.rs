//! Shared by the fuzz targets (included with `#[path]`, not a target).

/// The input cut into pieces of 1 to 7 bytes at points derived from the
/// input itself, so that a crash reproduces.
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut seed = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = 1 + (seed >> 33) as usize % 7;
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}
