//! A body rewrite that may have to ask the token vault. Rewriting never
//! waits; a pass that met a value (or a token) the vault's cache does not
//! know leaves a question instead. Such output is never taken: the vault
//! answers from its store, and the input since output was last taken is
//! rewritten again, from a copy of the rewriter made then, with the
//! answers. Requests (`tokenize`) and responses (`reveal`) both go through
//! here.

use bytes::Bytes;

use super::error::ProxyError;
use crate::rewrite::{self, BodyRewriter, Lookups, Report};
use crate::vault::{StoreError, Vault};

/// Passes over the same input before a rewrite that still asks the vault
/// is given up on: the second has every answer the first asked for, so it
/// never asks again; the bound only keeps a bug from looping.
const MAX_PASSES: usize = 3;

/// Asks the vault what a pass could not answer, and makes `lookups` the
/// next pass's.
pub(crate) async fn ask(vault: Option<&Vault>, lookups: &mut Lookups) -> Result<(), ProxyError> {
    let questions = lookups.take_questions();
    let Some(vault) = vault else {
        unreachable!("only lookups with a vault ask questions")
    };
    let answers = vault
        .answer(questions)
        .await
        .map_err(ProxyError::vault_unavailable)?;
    *lookups = std::mem::take(lookups).answered(answers);
    Ok(())
}

fn still_asking() -> ProxyError {
    ProxyError::vault_unavailable(StoreError::new(
        "a rewrite still asked the vault after its answers",
    ))
}

/// The rewriter as it was when output was last taken from it, and the
/// input given it since.
struct Checkpoint<'r> {
    rewriter: BodyRewriter<'r, Vec<Bytes>>,
    since: Vec<Bytes>,
}

/// A body rewriter, with what it takes to do a pass again when its rules
/// ask the vault.
pub(crate) struct Passes<'r> {
    rewriter: BodyRewriter<'r, Vec<Bytes>>,
    /// Kept when the rules ask the vault; boxed, so that a pass without it
    /// is half the size to build and copy into its own box.
    checkpoint: Option<Box<Checkpoint<'r>>>,
    vault: Option<&'r Vault>,
    /// Texts `reveal` had no value for, in output already taken.
    unrevealed: u64,
}

impl<'r> Passes<'r> {
    /// Boxed: a pass is 1 KiB (a rewriter, and a pointer to the copy kept
    /// when the rules ask the vault), which every request's future would
    /// otherwise hold inline, and copy each time the future moves.
    pub(crate) fn new(
        mut rewriter: BodyRewriter<'r, Vec<Bytes>>,
        vault: Option<&'r Vault>,
    ) -> Box<Self> {
        let checkpoint = rewriter.lookups_mut().has_vault().then(|| {
            Box::new(Checkpoint {
                rewriter: rewriter.clone(),
                since: Vec::new(),
            })
        });
        Box::new(Passes {
            rewriter,
            checkpoint,
            vault,
            unrevealed: 0,
        })
    }

    pub(crate) fn write(&mut self, piece: Bytes) -> Result<(), rewrite::Error> {
        if let Some(checkpoint) = &mut self.checkpoint {
            checkpoint.since.push(piece.clone());
        }
        self.rewriter.write(piece)
    }

    /// Rewrites the small pieces held so far.
    pub(crate) fn flush(&mut self) -> Result<(), rewrite::Error> {
        self.rewriter.flush()
    }

    /// The output so far, once the vault has answered whatever it asked
    /// (the input since the checkpoint rewritten again if it did). The
    /// checkpoint then moves here.
    pub(crate) async fn take_output(&mut self) -> Result<Vec<Bytes>, ProxyError> {
        let Some(checkpoint) = &mut self.checkpoint else {
            return Ok(std::mem::take(self.rewriter.sink_mut()));
        };
        let mut passes = 1;
        while self.rewriter.lookups_mut().asked() {
            if passes == MAX_PASSES {
                return Err(still_asking());
            }
            passes += 1;
            let mut lookups = std::mem::take(self.rewriter.lookups_mut());
            ask(self.vault, &mut lookups).await?;
            self.rewriter = checkpoint.rewriter.clone().lookups(lookups);
            for piece in &checkpoint.since {
                self.rewriter
                    .write(piece.clone())
                    .map_err(ProxyError::body)?;
            }
        }
        let output = std::mem::take(self.rewriter.sink_mut());
        let lookups = self.rewriter.lookups_mut();
        self.unrevealed += lookups.take_unrevealed();
        // What the output taken needed is not needed again: a long body
        // keeps what one step asked, not every answer of its life.
        lookups.forget_answers();
        checkpoint.since.clear();
        checkpoint.rewriter = self.rewriter.clone();
        Ok(output)
    }

    /// Ends the body, once the vault has answered what its end asked: the
    /// rest of the output, the report, and how many texts `reveal` had no
    /// value for.
    pub(crate) async fn finish(self: Box<Self>) -> Result<(Vec<Bytes>, Report, u64), ProxyError> {
        let (mut output, mut report, mut lookups) = self
            .rewriter
            .finish_with_lookups()
            .map_err(ProxyError::body)?;
        let mut passes = 1;
        while lookups.asked() {
            let Some(checkpoint) = &self.checkpoint else {
                unreachable!("only a rewriter with a vault asks")
            };
            if passes == MAX_PASSES {
                return Err(still_asking());
            }
            passes += 1;
            ask(self.vault, &mut lookups).await?;
            let mut again = checkpoint.rewriter.clone().lookups(lookups);
            for piece in &checkpoint.since {
                again.write(piece.clone()).map_err(ProxyError::body)?;
            }
            (output, report, lookups) = again.finish_with_lookups().map_err(ProxyError::body)?;
        }
        Ok((output, report, self.unrevealed + lookups.take_unrevealed()))
    }
}
