//! Fuzzes the request body decoder: any bytes, under each encoding, pushed
//! in pieces cut where the input's first byte says. Checked: no panic, no
//! step larger than `DECODE_STEP` whatever the input inflates to, and the
//! same output and verdict whatever the cut. Decoding stops after 16 MiB,
//! as `max_body_bytes` stops a body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scrim::proxy::fuzzing::{DECODE_STEP, decode_in_pieces};

const LIMIT: usize = 16 << 20;
const ENCODINGS: [&str; 4] = ["gzip", "deflate", "br", "identity"];

fn run(encoding: &str, input: &[u8], pieces: Vec<usize>) -> (Result<(), String>, Vec<u8>) {
    let mut out = Vec::new();
    let result = decode_in_pieces(encoding, input, pieces, |step| {
        assert!(
            step.len() <= DECODE_STEP || encoding == "identity",
            "{encoding}: a step of {} bytes",
            step.len()
        );
        out.extend_from_slice(step);
        out.len() < LIMIT
    });
    (result, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let encoding = ENCODINGS[usize::from(selector % 4)];
    let piece = usize::from(selector / 4) + 1;
    let (whole_result, whole) = run(encoding, input, vec![]);
    let (cut_result, cut) = run(encoding, input, vec![piece; input.len() / piece + 1]);
    if whole.len() < LIMIT && cut.len() < LIMIT {
        assert_eq!(
            whole_result.is_ok(),
            cut_result.is_ok(),
            "{encoding}: verdict depends on the cut"
        );
    }
    if whole_result.is_ok() && cut_result.is_ok() {
        let common = whole.len().min(cut.len());
        assert_eq!(whole[..common], cut[..common], "{encoding}: output depends on the cut");
    }
});
