//! Generated bodies.

/// `count` small objects in an array, each with a few members and one
/// nested level: many member names, each stepped through every live
/// selector state. Shared by `tests/cost.rs` and `benches/rewrite.rs`.
pub fn tiny_objects(count: usize) -> Vec<u8> {
    let mut body = b"[".to_vec();
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(
            format!(r#"{{"id":{i},"k7":"v{i}","x":{{"y":[1,2],"k150":"w"}},"z":true}}"#).as_bytes(),
        );
    }
    body.push(b']');
    body
}
