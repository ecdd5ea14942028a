//! A member of a consumer group: a durable consumer of a partitioned
//! namespace, run by every replica of a worker. Each replica runs the
//! partitions the group assigns it (see [`ownership::group`](crate::ownership::group)),
//! each under its own lease with its own fenced checkpoint, exactly as an
//! unpartitioned consumer runs; a partition that moves away is stopped
//! gracefully (in-flight deliveries finish, the checkpoint is written, the
//! lease released) while every other partition keeps flowing.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Runtime;
use super::consumer::Consumer;
use super::period::SHUTDOWN_IO;
use crate::observe::health::ConsumerState;
use crate::observe::metrics;
use crate::ownership::group::{self, Assignment};
use crate::{Error, Result};

/// How often a member reads its share: a partition given up by its owner is
/// taken up within about this long.
const POLL: Duration = Duration::from_millis(200);

/// A partition this member runs.
struct Running {
    /// Stops it gracefully (a child of the worker's shutdown).
    stop: CancellationToken,
    /// Its consumer loop.
    task: JoinHandle<Result<()>>,
}

/// Runs `consumer` as a member of its group until shutdown: heartbeats, runs
/// the partitions assigned to it and stops those that move away; at shutdown
/// it leaves the group first, so the others take its partitions over as soon
/// as it releases them.
///
/// # Errors
/// A permanent failure of the group calls or of one of its partitions.
pub(super) async fn run(consumer: Consumer, rt: Runtime) -> Result<()> {
    let store = rt.client.store().clone();
    let name = consumer.name.clone();
    let member = group::member_name();
    let ttl = rt.settings.lease_ttl;
    let beat_every = (ttl / 3).max(Duration::from_millis(100));
    let health = rt.health.consumer(&name, None);
    health.set(ConsumerState::Member);
    let gauges = (
        metrics::handler_gauge(metrics::GROUP_MEMBERS, &name, None),
        metrics::handler_gauge(metrics::GROUP_ASSIGNED, &name, None),
    );
    tracing::info!(consumer = &*name, member, namespace = %rt.client.namespace(), "joining the consumer group");
    let mut running: BTreeMap<u32, Running> = BTreeMap::new();
    let mut next_beat = Instant::now();
    let mut seen: Option<Assignment> = None;
    let mut failing = false;
    let result = loop {
        if let Err(error) = reap(&mut running, &rt, &name).await {
            break Err(error);
        }
        let sent = Instant::now();
        let heartbeat = sent >= next_beat;
        match group::sync(&store, &name, &member, heartbeat.then_some(ttl)).await {
            Ok(assignment) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(consumer = &*name, "reaching the consumer group again");
                }
                if heartbeat {
                    next_beat = sent + beat_every;
                }
                if !assignment.live {
                    // Its heartbeat expired (a long pause): join again at once.
                    next_beat = Instant::now();
                    continue;
                }
                gauges.0.set(f64::from(assignment.members));
                gauges.1.set(assignment.partitions.len() as f64);
                if seen
                    .as_ref()
                    .is_none_or(|s| s.partitions != assignment.partitions || s.members != assignment.members)
                {
                    tracing::info!(consumer = &*name, members = assignment.members, generation = assignment.generation, partitions = ?assignment.partitions, "consumer group assignment");
                }
                match reconcile(&mut running, &assignment.partitions, &consumer, &rt).await {
                    Ok(()) => seen = Some(assignment),
                    // Tried again at the next poll.
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(consumer = &*name, %error, "could not start a partition; retrying");
                    }
                    Err(error) => break Err(error),
                }
            }
            Err(error) if error.is_retryable() => {
                // The partitions keep running under their leases meanwhile.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(consumer = &*name, %error, "cannot reach the consumer group; retrying (logged once per outage)");
                }
            }
            Err(error) => break Err(error),
        }
        tokio::select! {
            _ = rt.shutdown.cancelled() => break Ok(()),
            _ = tokio::time::sleep(POLL.min(beat_every)) => {}
        }
    };
    // Leave before the partitions stop, so their new owners are told at once
    // and wait only for the leases this member is about to release.
    match tokio::time::timeout(SHUTDOWN_IO, group::leave(&store, &name, &member)).await {
        Ok(Ok(_)) => tracing::info!(consumer = &*name, member, "left the consumer group"),
        Ok(Err(error)) => {
            tracing::warn!(consumer = &*name, %error, "could not leave the consumer group; its heartbeat expires on its own")
        }
        Err(_) => tracing::warn!(
            consumer = &*name,
            "leaving the consumer group timed out; its heartbeat expires on its own"
        ),
    }
    for partition in running.values() {
        partition.stop.cancel();
    }
    for (index, partition) in running {
        finished(partition.task.await, &name, index);
        rt.health.remove(&name, Some(index));
    }
    rt.health.remove(&name, None);
    result
}

/// Starts the partitions assigned to this member that it does not run, and
/// asks those no longer assigned to it to stop.
///
/// # Errors
/// The view of a partition could not be made (its count unreadable).
async fn reconcile(
    running: &mut BTreeMap<u32, Running>,
    assigned: &[u32],
    consumer: &Consumer,
    rt: &Runtime,
) -> Result<()> {
    for (index, partition) in running.iter() {
        if !assigned.contains(index) && !partition.stop.is_cancelled() {
            tracing::info!(
                consumer = &*consumer.name,
                partition = index,
                "partition moves to another member; stopping it"
            );
            partition.stop.cancel();
        }
    }
    for &index in assigned {
        if running.contains_key(&index) {
            continue;
        }
        let stop = rt.shutdown.child_token();
        let prt = Runtime {
            client: rt.client.partition(index).await?,
            shutdown: stop.clone(),
            partition: Some(index),
            ..rt.clone()
        };
        let span = tracing::info_span!("partition", partition = index);
        let task = tokio::spawn(consumer.clone().run(prt).instrument(span));
        running.insert(index, Running { stop, task });
    }
    Ok(())
}

/// Collects the partitions whose loops ended (they were asked to stop).
///
/// # Errors
/// The permanent failure a partition stopped with.
async fn reap(running: &mut BTreeMap<u32, Running>, rt: &Runtime, name: &std::sync::Arc<str>) -> Result<()> {
    let done: Vec<u32> = running.iter().filter(|(_, p)| p.task.is_finished()).map(|(&k, _)| k).collect();
    for index in done {
        let Some(partition) = running.remove(&index) else { continue };
        rt.health.remove(name, Some(index));
        if let Some(error) = finished(partition.task.await, name, index) {
            return Err(error);
        }
    }
    Ok(())
}

/// Logs how a partition's loop ended; returns its failure.
fn finished(
    joined: std::result::Result<Result<()>, tokio::task::JoinError>,
    name: &str,
    index: u32,
) -> Option<Error> {
    match joined {
        Ok(Ok(())) => {
            tracing::info!(consumer = name, partition = index, "partition stopped");
            None
        }
        Ok(Err(error)) => Some(error),
        Err(panic) => {
            tracing::error!(consumer = name, partition = index, %panic, "a partition's loop panicked");
            None
        }
    }
}
