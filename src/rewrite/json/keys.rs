//! The current member name of every open object, and the paths built from
//! them: for errors (`$.data[3].user_data.em`) and the report's places.

use std::ops::Range;

use bytes::Bytes;

use super::Embedded;
use super::slots::Frame;
use crate::rewrite::fields::{Hashed, templated};
use crate::rewrite::path::{MAX_KEY_SHOWN, push_key};

/// The frames' current keys, stacked (each frame's from its `key_start`).
///
/// The innermost object's key is usually left where it lies, in the chunk
/// being scanned, and copied only when that chunk ends or a container opens
/// below it: most members are scalars, and a copy of every member name was
/// 3% of the pass-through's instructions and of its time (callgrind, and 30
/// alternating runs of `benches/ndjson.rs`).
#[derive(Clone, Debug, Default)]
pub(super) struct PathKeys {
    stored: Vec<u8>,
    /// The chunk being scanned (empty between chunks).
    chunk: Bytes,
    /// Where the innermost frame's key lies in `chunk`, when not stored.
    in_chunk: Option<Range<usize>>,
}

impl PathKeys {
    pub(super) fn with_capacity(capacity: usize) -> PathKeys {
        PathKeys {
            stored: Vec::with_capacity(capacity),
            ..PathKeys::default()
        }
    }

    /// A chunk's scan begins: keys may be left in it.
    pub(super) fn begin_chunk(&mut self, chunk: &Bytes) {
        self.chunk = chunk.clone();
    }

    /// The chunk's scan has ended: a key left in it is stored, and the
    /// chunk let go.
    pub(super) fn end_chunk(&mut self) {
        self.store_in_chunk();
        self.chunk = Bytes::new();
    }

    /// The frame whose keys start at `start` has a new current key, as it
    /// lies in `label` (unescaped). Only the part a path shows is kept.
    pub(super) fn set(&mut self, start: usize, label: &[u8]) {
        self.truncate(start);
        self.stored
            .extend_from_slice(&label[..shown_len(label.len())]);
    }

    /// [`set`](Self::set), for a key that lies as it is at `range` of the
    /// chunk being scanned: left there.
    pub(super) fn set_in_chunk(&mut self, start: usize, range: Range<usize>) {
        self.truncate(start);
        self.in_chunk = Some(range.start..range.start + shown_len(range.len()));
    }

    /// The keys of the frames from the one whose keys start at `start` go.
    pub(super) fn truncate(&mut self, start: usize) {
        self.in_chunk = None;
        self.stored.truncate(start);
    }

    /// Where a frame opened now starts its keys: after every open frame's
    /// current key, stored.
    pub(super) fn next_start(&mut self) -> usize {
        self.store_in_chunk();
        self.stored.len()
    }

    fn store_in_chunk(&mut self) {
        if let Some(range) = self.in_chunk.take() {
            self.stored.extend_from_slice(&self.chunk[range]);
        }
    }

    /// The key of the frame whose keys start at `start`, up to where the
    /// next frame's start (`None` for the innermost frame).
    fn key(&self, start: usize, end: Option<usize>) -> &[u8] {
        match (end, &self.in_chunk) {
            (Some(end), _) => &self.stored[start..end],
            (None, Some(range)) => &self.chunk[range.clone()],
            (None, None) => &self.stored[start..],
        }
    }
}

/// How much of a member name of `len` bytes a path keeps: what it shows,
/// and one byte more, by which a name too long to show is told.
pub(super) fn shown_len(len: usize) -> usize {
    len.min(MAX_KEY_SHOWN + 1)
}

/// Where the current value is, for the report: its path, built when
/// needed, and the hash of its template, kept as the rewriter goes. A free
/// function for the reason [`current_path`] is.
pub(super) fn place<'a>(
    frames: &'a [Frame],
    keys: &'a PathKeys,
    embedded: &'a Option<Embedded>,
    root: u64,
) -> Hashed<impl FnOnce() -> String + 'a, impl FnOnce() -> String + 'a> {
    let hash = frames.last().map_or(root, |frame| frame.child_template);
    Hashed(
        hash,
        move || current_path(frames, keys, embedded),
        move || current_template(frames, keys, embedded),
    )
}

/// The template of the current position's path (`$.data[*].user_data.em`),
/// built as [`Hashed`] places are hashed.
pub(super) fn current_template(
    frames: &[Frame],
    keys: &PathKeys,
    embedded: &Option<Embedded>,
) -> String {
    let root = embedded.as_ref().map(|e| templated(&e.path));
    path_from(frames, keys, root.as_deref().unwrap_or("$"), true)
}

/// The path of the current position (`$.data[3].user_data.em`). A free
/// function over the fields it needs, so that callers may hold other borrows
/// of the rewriter (the report, in `Report::record`'s closure).
pub(super) fn current_path(
    frames: &[Frame],
    keys: &PathKeys,
    embedded: &Option<Embedded>,
) -> String {
    let root = embedded.as_ref().map_or("$", |e| e.path.as_str());
    path_from(frames, keys, root, false)
}

/// `root` and the frames' keys and indices below it; each index `[*]` in
/// a template.
fn path_from(frames: &[Frame], keys: &PathKeys, root: &str, template: bool) -> String {
    let mut path = String::with_capacity(64);
    path.push_str(root);
    for (i, frame) in frames.iter().enumerate() {
        if !frame.in_child {
            continue;
        }
        if frame.object {
            let end = frames.get(i + 1).map(|next| next.key_start);
            push_key(&mut path, keys.key(frame.key_start, end));
        } else if template {
            path.push_str("[*]");
        } else {
            use std::fmt::Write;
            let _ = write!(path, "[{}]", frame.count);
        }
    }
    path
}
