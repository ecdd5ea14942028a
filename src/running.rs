//! A worker running in the background of a test or an example.

use remq::Worker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A worker for tests against `url`: only the handlers a test adds, no signal
/// handlers, new consumers from the earliest message, checkpoints every 50 ms
/// and 1 s leases, so tests are quick. Its logs go to the test's output when
/// `RUST_LOG` is set (see [`init_test_logs`](crate::init_test_logs)).
pub fn test_worker(url: impl Into<String>) -> Worker {
    crate::init_test_logs();
    Worker::new(url)
        .without_registered_handlers()
        .without_signal_handlers()
        .start_from(remq::StartFrom::Earliest)
        .checkpoint_interval(std::time::Duration::from_millis(50))
        .lease_ttl(std::time::Duration::from_secs(1))
}

/// A [`Worker`] spawned on the current tokio runtime, stopped gracefully by
/// [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningWorker {
    /// Cancels the worker.
    shutdown: CancellationToken,
    /// The worker's `run()`.
    task: JoinHandle<remq::Result<()>>,
}

impl RunningWorker {
    /// Spawns `worker.run()`.
    pub fn start(worker: Worker) -> Self {
        RunningWorker { shutdown: worker.shutdown_token(), task: tokio::spawn(worker.run()) }
    }

    /// Whether `run()` has returned (say, because a consumer failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the worker as SIGTERM would (at once, not when the returned future
    /// is first polled) and returns what `run()` returned.
    ///
    /// # Panics
    /// The future panics when the worker task panicked.
    pub fn stop(self) -> impl Future<Output = remq::Result<()>> {
        self.shutdown.cancel();
        async move { self.task.await.expect("the worker task panicked") }
    }

    /// Kills the worker task without a graceful shutdown, as a crash would: no
    /// final checkpoint, no lease release.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
