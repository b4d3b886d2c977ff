//! One cancellation token for the whole process, fired by SIGINT or SIGTERM. A second signal
//! exits at once. With [`EXIT_WITH_PARENT`] set, the parent's end fires it too.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// `HOOKLINE_EXIT_WITH_PARENT=<pid>`: shut down (draining, as on SIGTERM) once the process's
/// parent is no longer `<pid>`, i.e. the parent died, even by SIGKILL, and the process was
/// re-parented. For a supervising tool (the load test) that cannot always stop its child.
pub const EXIT_WITH_PARENT: &str = "HOOKLINE_EXIT_WITH_PARENT";
/// How often the parent is checked.
const PARENT_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Spawns the signal listener (and the parent watch, when asked for) and returns the token
/// they cancel.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    if let Ok(v) = std::env::var(EXIT_WITH_PARENT) {
        match v.trim().parse::<u32>() {
            Ok(parent) => {
                let t = token.clone();
                tokio::spawn(async move {
                    let mut check = tokio::time::interval(PARENT_CHECK);
                    loop {
                        tokio::select! {
                            _ = t.cancelled() => return,
                            _ = check.tick() => {}
                        }
                        if std::os::unix::process::parent_id() != parent {
                            tracing::warn!(parent, "shutting down: the parent process is gone");
                            t.cancel();
                            return;
                        }
                    }
                });
            }
            Err(_) => tracing::warn!(value = v, "{EXIT_WITH_PARENT} is not a process id; ignored"),
        }
    }
    let t = token.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down: draining in-flight work"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down: draining in-flight work"),
        }
        t.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
    token
}
