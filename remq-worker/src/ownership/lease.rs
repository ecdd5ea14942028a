//! Exclusive ownership: a lease in Redis with a fencing token, renewed in the
//! background while held; a consumer's, or a flush lock.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::Result;
use crate::connection::Store;
use crate::observe::health::{ConsumerHealth, ConsumerState};
use crate::protocol::{LeaseKey, scripts};

/// How often a standby checks whether the lease became free, at most. Short, so
/// a graceful hand-over (the owner releases its lease) is taken up at once.
const STANDBY_POLL: Duration = Duration::from_millis(200);

/// A held lease. It is renewed every third of its lifetime by a background task;
/// [`lost`](Self::lost) fires when renewal shows another owner took it, or when
/// no renewal got through within the lease time (each renewal is bounded by the
/// time the lease is known to last, so a hung connection cannot delay this).
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    /// The fencing token: random per acquisition (unique even if Redis loses its
    /// data); the checkpoint script accepts only this owner's writes.
    token: u64,
    /// Cancelled when the lease is lost.
    lost: CancellationToken,
    /// The renewal task, stopped when the guard goes.
    renewal: AbortOnDropHandle<()>,
    /// Used to release the lease.
    store: Store,
    /// What the lease guards.
    key: LeaseKey,
}

impl LeaseGuard {
    /// Waits until this process owns the lease `key` (a hot standby while
    /// another process holds it), then returns the guard; `None` when `stop`
    /// fires first.
    ///
    /// A stop that comes while a take is on its way to Redis gives back what
    /// that call may have taken (a release with its token, which changes
    /// nothing if it took nothing), so a consumer stopped as it starts (say, a
    /// partition moved away at once) does not leave its lease to expire: the
    /// next owner takes it at once.
    ///
    /// # Errors
    /// Redis errors other than the lease being held.
    pub(crate) async fn acquire(
        store: &Store,
        key: &LeaseKey,
        ttl: Duration,
        health: &ConsumerHealth,
        stop: &CancellationToken,
    ) -> Result<Option<LeaseGuard>> {
        let consumer = &**key.name();
        let mut announced = false;
        loop {
            let token = fastrand::u64(1..);
            let taken = tokio::select! {
                taken = Self::take(store, key, ttl, token) => taken?,
                _ = stop.cancelled() => {
                    let _ = tokio::time::timeout(GIVE_BACK, give_back(store, key, token)).await;
                    return Ok(None);
                }
            };
            match taken {
                Ok(guard) => {
                    tracing::info!(consumer, token = guard.token, "acquired the consumer lease");
                    return Ok(Some(guard));
                }
                Err(remaining) => {
                    if !announced {
                        tracing::info!(consumer, "another process owns this consumer; standing by");
                        health.set(ConsumerState::Standby);
                        announced = true;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(remaining.min(STANDBY_POLL)) => {}
                    }
                }
            }
        }
    }

    /// Takes the lease if it is free; else says how long its owner still holds it.
    ///
    /// # Errors
    /// Redis errors.
    pub(crate) async fn try_acquire(
        store: &Store,
        key: &LeaseKey,
        ttl: Duration,
    ) -> Result<std::result::Result<LeaseGuard, Duration>> {
        Self::take(store, key, ttl, fastrand::u64(1..)).await
    }

    /// [`try_acquire`](Self::try_acquire) with fencing token `token`.
    async fn take(
        store: &Store,
        key: &LeaseKey,
        ttl: Duration,
        token: u64,
    ) -> Result<std::result::Result<LeaseGuard, Duration>> {
        let (acquired, remaining): (u8, u64) = store
            .eval("acquire lease", &scripts::LEASE, lease_args("acquire", key, millis(ttl), token))
            .await?;
        if acquired != 1 {
            return Ok(Err(Duration::from_millis(remaining.max(1))));
        }
        Ok(Ok(Self::start(store.clone(), key.clone(), token, ttl)))
    }

    fn start(store: Store, key: LeaseKey, token: u64, ttl: Duration) -> LeaseGuard {
        let lost = CancellationToken::new();
        let renewal = tokio::spawn(renew(store.clone(), key.clone(), token, ttl, lost.clone()));
        LeaseGuard { token, lost, renewal: AbortOnDropHandle::new(renewal), store, key }
    }

    /// The fencing token for checkpoints.
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// Fires when the lease is lost.
    pub(crate) fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Stops renewing and gives the lease up so a standby takes over at once.
    /// A lease that was already lost is left alone.
    pub(crate) async fn release(self) {
        self.renewal.abort();
        if self.lost.is_cancelled() {
            return;
        }
        let released = give_back(&self.store, &self.key, self.token).await;
        let consumer = &**self.key.name();
        match released {
            Ok(1) => tracing::info!(consumer, lease = %self.key, "released the consumer lease"),
            Ok(_) => {
                tracing::warn!(consumer, lease = %self.key, "the lease had already passed to another owner")
            }
            Err(error) => {
                tracing::warn!(consumer, lease = %self.key, %error, "could not release the lease; it expires on its own")
            }
        }
    }
}

/// Renews every `ttl / 3` until the lease is found taken, or no renewal got
/// through within `ttl` of the last one sent that succeeded: the lease must then
/// be presumed gone, since a standby may already hold it.
async fn renew(store: Store, key: LeaseKey, token: u64, ttl: Duration, lost: CancellationToken) {
    let consumer = &**key.name();
    // A successful renewal extends the lease to at least `sent + ttl`, so that is
    // how long ownership is certain.
    let mut owned_until = Instant::now() + ttl;
    // Failures are logged once per outage, not once per attempt.
    let mut failing = false;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let sent = Instant::now();
        let renewal =
            store.eval::<i64>("renew lease", &scripts::LEASE, lease_args("renew", &key, millis(ttl), token));
        match tokio::time::timeout_at(owned_until, renewal).await {
            Ok(Ok(1)) => {
                owned_until = sent + ttl;
                failing = false;
            }
            Ok(Ok(_)) => {
                tracing::error!(consumer, "the lease was taken by another owner; stopping");
                break;
            }
            Ok(Err(error)) if Instant::now() < owned_until => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(consumer, %error, "lease renewal failed; retrying until the lease expires");
                }
            }
            Ok(Err(_)) | Err(_) => {
                tracing::error!(consumer, "could not renew the lease before it expired; stopping");
                break;
            }
        }
    }
    lost.cancel();
}

/// How long a stopped [`LeaseGuard::acquire`] waits to give back what its
/// last call may have taken.
const GIVE_BACK: Duration = Duration::from_secs(1);

/// Releases `key` if `token` holds it: 1 when it did, 0 when it did not.
async fn give_back(store: &Store, key: &LeaseKey, token: u64) -> Result<i64> {
    store.eval("release lease", &scripts::LEASE, lease_args("release", key, 0, token)).await
}

/// `lease.lua`'s arguments: operation, name, lease time, token, kind.
fn lease_args<'a>(
    op: &'a str,
    key: &'a LeaseKey,
    ttl_ms: u64,
    token: u64,
) -> (&'a str, &'a str, u64, u64, &'a str) {
    (op, key.name(), ttl_ms, token, key.kind())
}

/// A duration in whole milliseconds, at least 1.
fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX).max(1)
}
