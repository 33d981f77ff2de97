//! What `/livez` proves: every loop that serves the HTTPS port — each lane (the threads of
//! [`super::lanes`]) and the accept loop — answers a ping within [`ANSWER_WITHIN`]. A handler that
//! blocks its thread stops that lane's connections cold while the probe port (served elsewhere)
//! would still answer; asking the lane itself makes the kubelet restart the container instead.
//! A ping costs nothing while no probe asks.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::warn;

/// How long a serving loop may take to answer: well under the kubelet's default probe timeout
/// (1 s), and far above what a lane takes even at saturation (its ready tasks are a few µs each;
/// large reviews are judged off the lanes).
pub const ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// A ping: the loop answers by sending `()`.
pub type Ping = oneshot::Sender<()>;

/// What happened to a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// On its way; the loop answers it when it runs.
    Sent,
    /// The loop was stopped on purpose (a drain): it owes no answer.
    Stopped,
    /// The loop ended on its own (its thread died): it never answers again.
    Gone,
}

type Ask = Box<dyn Fn(Ping) -> Asked + Send + Sync>;

struct Watched {
    name: String,
    ask: Ask,
}

/// The serving loops `/livez` asks. Clones share them.
#[derive(Clone, Default)]
pub struct Liveness {
    watched: Arc<RwLock<Vec<Watched>>>,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> =
            self.watched.read().map(|w| w.iter().map(|w| w.name.clone()).collect()).unwrap_or_default();
        f.debug_struct("Liveness").field("watched", &names).finish()
    }
}

impl Liveness {
    /// Watches a loop named `name` (as the reason of a failing `/livez` names it), asked by `ask`.
    pub fn watch(&self, name: impl Into<String>, ask: impl Fn(Ping) -> Asked + Send + Sync + 'static) {
        if let Ok(mut w) = self.watched.write() {
            w.push(Watched { name: name.into(), ask: Box::new(ask) });
        }
    }

    /// Pings every loop; `Err` names those that are gone or did not answer within
    /// [`ANSWER_WITHIN`].
    pub async fn check(&self) -> Result<(), String> {
        let mut failed = Vec::new();
        let mut asked = Vec::new();
        if let Ok(mut watched) = self.watched.write() {
            // A loop stopped on purpose is forgotten (a server started again registers anew).
            watched.retain(|w| {
                let (tx, rx) = oneshot::channel();
                match (w.ask)(tx) {
                    Asked::Sent => {
                        asked.push((w.name.clone(), rx));
                        true
                    }
                    Asked::Stopped => false,
                    Asked::Gone => {
                        failed.push(format!("{} has ended", w.name));
                        true
                    }
                }
            });
        }
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        let answers = futures::future::join_all(
            asked
                .into_iter()
                .map(|(name, rx)| async move { (name, tokio::time::timeout_at(deadline, rx).await) }),
        )
        .await;
        for (name, answer) in answers {
            match answer {
                Ok(_) => {} // answered, or stopped meanwhile (the ping dropped unanswered)
                Err(_) => failed.push(format!(
                    "{name} did not answer within {} ms (something blocks it)",
                    ANSWER_WITHIN.as_millis()
                )),
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        let reason = failed.join("; ");
        warn!(%reason, "liveness check failed: the kubelet restarts this container if it persists");
        Err(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_watched_is_live() {
        assert_eq!(Liveness::default().check().await, Ok(()));
    }

    #[tokio::test]
    async fn a_loop_that_does_not_answer_is_named_and_a_stopped_one_forgotten() {
        let live = Liveness::default();
        live.watch("answers", |p: Ping| {
            let _ = p.send(());
            Asked::Sent
        });
        // Keeps its pings unanswered, as a loop whose thread is blocked.
        let (keep, kept) = std::sync::mpsc::channel();
        live.watch("blocked", move |p: Ping| {
            let _ = keep.send(p);
            Asked::Sent
        });
        live.watch("dead", |_| Asked::Gone);
        live.watch("stopped", |_| Asked::Stopped);
        let e = live.check().await.unwrap_err();
        assert_eq!(e, "dead has ended; blocked did not answer within 500 ms (something blocks it)");
        assert_eq!(format!("{live:?}"), r#"Liveness { watched: ["answers", "blocked", "dead"] }"#);
        drop(kept);
    }
}
