//! What ends a command that would otherwise run forever (`tail`): Ctrl-C,
//! SIGTERM, or the reader of stdout going away (`remq tail x | head -1`).

use std::io;

use rustix::event::{self, PollFd, PollFlags};
use rustix::io::Errno;
use tokio::signal::unix::{SignalKind, signal};

/// Resolves when the user or the system asks to stop, or nobody reads stdout
/// any more.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub(crate) async fn requested() -> io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let interrupt = tokio::signal::ctrl_c();
    tokio::select! {
        result = interrupt => result,
        _ = terminate.recv() => Ok(()),
        () = stdout_closed() => Ok(()),
    }
}

/// Resolves when stdout is a pipe whose reader closed it (or a terminal that
/// hung up); never otherwise.
///
/// Writing would tell (with `EPIPE`), but a quiet `tail` may not write for
/// hours. Instead a thread waits in `poll(2)` on stdout asking for no event at
/// all: the kernel still reports `POLLERR` on a pipe's write end as soon as its
/// read end is closed, and `POLLHUP` on a terminal that hung up. Files and
/// `/dev/null` report neither and never close. The thread is not joined: it
/// ends with the process.
async fn stdout_closed() {
    let (closed, on_close) = tokio::sync::oneshot::channel();
    let watcher = std::thread::Builder::new().name("stdout-watch".into()).spawn(move || {
        let stdout = io::stdout();
        let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
        loop {
            match event::poll(&mut fds, None) {
                Err(Errno::INTR) => continue,
                Ok(_) if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) => {
                    let _ = closed.send(());
                }
                // An invalid descriptor, or a poll that cannot be made: no watch.
                _ => {}
            }
            return;
        }
    });
    if watcher.is_ok() && on_close.await.is_ok() {
        return;
    }
    std::future::pending().await
}
