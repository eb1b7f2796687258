//! The process's budget for request bodies held in memory
//! (`limits.max_buffered_bytes`), shared by every worker, connection and
//! HTTP/2 stream. A request with a body reserves what it may hold before
//! its body is read, and gives it back when it is answered: memory is then
//! bounded by the budget, however many connections hold bodies, rather than
//! by `max_connections` times `buffer_limit`.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::decode::Coding;
use super::error::ProxyError;
use super::forward::declared_length;
use crate::policy::Limits;

/// Reservations are counted in KiB: a semaphore takes at most `u32`
/// permits at once.
const UNIT: u64 = 1024;

/// How long a request waits for room before its 503.
const WAIT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct BufferBudget {
    permits: Arc<Semaphore>,
    total_units: u64,
}

/// Room held for one request's body, given back on drop.
pub(crate) struct Reservation(#[allow(dead_code)] OwnedSemaphorePermit);

impl BufferBudget {
    pub fn new(bytes: u64) -> BufferBudget {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        BufferBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            total_units: units,
        }
    }

    /// Reserves what a request with these headers may hold under `limits`:
    /// its declared length up to `buffer_limit` (all of `buffer_limit` when
    /// its length is unknown or it is decoded from a compressed coding, plus
    /// its decoder's window). `decodes`: whether the route decodes bodies
    /// (it has body rules or reads consent signals in them). Waits up to a
    /// second for room, then refuses.
    pub(crate) async fn reserve(
        &self,
        headers: &HeaderMap,
        limits: &Limits,
        decodes: bool,
    ) -> Result<Reservation, ProxyError> {
        let cap = limits.buffer_limit.min(limits.max_body_bytes);
        // The coding as the decoder reads it; one it refuses is refused
        // before anything is read.
        let coding = if decodes {
            Coding::of(headers).unwrap_or(Coding::Identity)
        } else {
            Coding::Identity
        };
        let bytes = match coding {
            Coding::Identity => declared_length(headers).map_or(cap, |n| n.min(cap)),
            compressed => cap + compressed.window_bytes(),
        };
        // A reservation larger than the whole budget could never be had.
        let units = bytes.div_ceil(UNIT).clamp(1, self.total_units);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        // Room at once, nearly always: no timer.
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(units) {
            return Ok(Reservation(permit));
        }
        match tokio::time::timeout(WAIT, self.permits.clone().acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(Reservation(permit)),
            _ => Err(ProxyError::overloaded()),
        }
    }
}
