//! Clean stops, the same for every role: the first SIGTERM or Ctrl-C asks
//! the process to stop taking work and finish (or release) what it holds;
//! a second one exits at once. A watchdog ends a stop that overruns
//! `shutdown_grace`, so an orchestrator's kill timer never has to.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A stop request that any number of tasks can wait for. Unlike a
/// `Notify`, a task that starts waiting after the request sees it too.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A stop triggered by SIGTERM or Ctrl-C. After the first signal the
    /// process has `grace` to end by itself; a second signal, or the end of
    /// the grace period, exits at once (130 and 1).
    pub fn on_signal(grace: Duration) -> Shutdown {
        let stop = Shutdown::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let mut signals = 0;
            loop {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => if r.is_err() { return },
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
                signals += 1;
                if signals > 1 {
                    tracing::warn!("second signal: exiting now");
                    std::process::exit(130);
                }
                tracing::info!(grace = ?grace, "stopping: no new work; finishing or releasing what is in flight");
                trigger.trigger();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    tracing::error!(grace = ?grace, "did not stop within shutdown_grace; exiting");
                    std::process::exit(1);
                });
            }
        });
        stop
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a stop was asked for (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone: nobody can stop us then,
        // so wait forever.
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_waiter_sees_an_earlier_stop() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        s.trigger();
        tokio::time::timeout(Duration::from_secs(1), s.clone().wait())
            .await
            .expect("wait returns after trigger");
        assert!(s.is_triggered());
    }
}
