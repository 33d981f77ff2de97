//! Where webhook connections run: each on one thread, from its handshake to its close.
//!
//! The API server calls a `service:` webhook over pooled HTTP/1.1 keep-alive connections, one
//! review at a time on each, and on a busy cluster the reviews arrive one by one. On Tokio's
//! work-stealing pool the worker that the socket's readiness woke then woke another worker for the
//! task (a futex per review and a second context switch), a cost that the review's own work does
//! not come near. So each accepted connection is handed to one of a few threads ("lanes"), each
//! running a single-threaded runtime: a review is read, judged and answered on the thread that woke
//! for it. An h2 connection's streams run on its lane too: handing each to another thread would
//! bring the wake-ups back. Each lane answers `/livez`'s pings ([`super::liveness`]), so that a
//! handler blocking its thread makes the container restart rather than silently stall that lane.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use futures::future::BoxFuture;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::liveness::{Asked, Liveness, Ping};

type Serve = Box<dyn FnOnce(TcpStream) -> BoxFuture<'static, ()> + Send>;

/// What a lane is handed.
enum Job {
    Serve(std::net::TcpStream, Serve),
    /// Answered by the lane's own loop: only a thread that runs answers.
    Ping(Ping),
}

struct Lane {
    name: String,
    tx: mpsc::UnboundedSender<Job>,
    /// Connections handed over and not yet closed.
    open: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

/// The lanes of one listener. Dropping them (or [`Lanes::stop`]) ends every connection still on
/// them, as the end of a drain does.
pub struct Lanes {
    lanes: Vec<Lane>,
}

/// Decrements a lane's count however its connection ends (closed, failed, or dropped with the
/// runtime at the end of a drain).
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lanes {
    /// Starts `n` lanes (at least one). A lane that cannot start (no thread, no runtime) is left
    /// out and said so; with none at all, connections run on the caller's runtime, as before lanes.
    pub fn start(n: usize) -> Self {
        let lanes = (0..n.max(1)).filter_map(|i| match Lane::start(i) {
            Ok(lane) => Some(lane),
            Err(e) => {
                warn!(lane = i, error = %e, "could not start a webhook thread; serving on fewer");
                None
            }
        });
        Self { lanes: lanes.collect() }
    }

    /// One lane per core this process may use (its cgroup's CPU quota included).
    pub fn per_core() -> Self {
        Self::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs `serve` on the lane with the fewest open connections.
    pub fn hand_over<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(lane) = self.lanes.iter().min_by_key(|l| l.open.load(Ordering::Relaxed)) else {
            tokio::spawn(serve(tcp));
            return;
        };
        // Moved as a plain socket: a Tokio socket stays registered with the runtime that made it.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "could not hand a connection over; dropping it");
                return;
            }
        };
        lane.open.fetch_add(1, Ordering::Relaxed);
        let serve: Serve = Box::new(move |tcp| Box::pin(serve(tcp)));
        if let Err(mpsc::error::SendError(Job::Serve(std, serve))) = lane.tx.send(Job::Serve(std, serve)) {
            // The lane's thread is gone (it cannot end while we hold its sender, short of a
            // panic; /livez then fails): serve here rather than drop the client.
            lane.open.fetch_sub(1, Ordering::Relaxed);
            if let Ok(tcp) = TcpStream::from_std(std) {
                tokio::spawn(serve(tcp));
            }
        }
    }

    /// Has `liveness` ping every lane. It holds no lane open: once the lanes are stopped, they
    /// owe no answer.
    pub fn watch(&self, liveness: &Liveness) {
        for lane in &self.lanes {
            let tx = lane.tx.downgrade();
            liveness.watch(format!("the webhook thread {}", lane.name), move |ping| match tx.upgrade() {
                None => Asked::Stopped,
                Some(tx) => match tx.send(Job::Ping(ping)) {
                    Ok(()) => Asked::Sent,
                    Err(_) => Asked::Gone,
                },
            });
        }
    }

    /// Ends the lanes and waits for their threads; connections still open are closed.
    pub async fn stop(self) {
        let threads: Vec<_> = self.lanes.into_iter().map(|l| l.thread).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    #[cfg(test)]
    fn open(&self) -> Vec<usize> {
        self.lanes.iter().map(|l| l.open.load(Ordering::Relaxed)).collect()
    }
}

impl Lane {
    fn start(i: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let open = Arc::new(AtomicUsize::new(0));
        let count = open.clone();
        let name = format!("webhook-{i}");
        let thread = std::thread::Builder::new().name(name.clone()).spawn(move || {
            rt.block_on(async move {
                while let Some(job) = rx.recv().await {
                    let (std, serve) = match job {
                        Job::Serve(std, serve) => (std, serve),
                        Job::Ping(ping) => {
                            let _ = ping.send(());
                            continue;
                        }
                    };
                    let open = Open(count.clone());
                    match TcpStream::from_std(std) {
                        Ok(tcp) => {
                            tokio::spawn(async move {
                                serve(tcp).await;
                                drop(open);
                            });
                        }
                        Err(e) => debug!(error = %e, "could not register a handed-over connection"),
                    }
                }
            });
            // The runtime drops here, and with it every connection still open on this lane.
        })?;
        Ok(Self { name, tx, open, thread })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Each connection is served on a lane thread, the least busy one, and leaves its count when
    /// it closes.
    #[tokio::test]
    async fn connections_go_to_the_least_busy_lane_and_run_there() {
        let lanes = Lanes::start(2);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            lanes.hand_over(server, |mut tcp| async move {
                let name = std::thread::current().name().unwrap_or_default().to_owned();
                let mut buf = [0u8; 1];
                // Echo the thread's name once asked, then wait for the client to close.
                let _ = tcp.read(&mut buf).await;
                let _ = tcp.write_all(name.as_bytes()).await;
                let _ = tcp.shutdown().await;
                let _ = tcp.read(&mut buf).await;
            });
            clients.push(client);
        }
        assert_eq!(lanes.open(), vec![2, 2]);
        let mut names = Vec::new();
        for c in &mut clients {
            c.write_all(b"?").await.unwrap();
            let mut name = String::new();
            c.read_to_string(&mut name).await.unwrap();
            names.push(name);
        }
        names.sort();
        assert_eq!(names, ["webhook-0", "webhook-0", "webhook-1", "webhook-1"]);
        drop(clients);
        for _ in 0..200 {
            if lanes.open() == vec![0, 0] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(lanes.open(), vec![0, 0]);
        lanes.stop().await;
    }

    /// Stopping the lanes closes a connection that is still open.
    #[tokio::test]
    async fn stopping_closes_open_connections() {
        let lanes = Lanes::start(1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        lanes.hand_over(server, |mut tcp| async move {
            let mut buf = [0u8; 1];
            let _ = tcp.read(&mut buf).await;
        });
        lanes.stop().await;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    }

    /// A handler that blocks its lane's thread fails liveness, naming that lane, within the
    /// bound; once it lets go, liveness passes again; stopped lanes owe no answer.
    #[tokio::test]
    async fn a_blocked_lane_fails_liveness_by_name_and_recovers() {
        let lanes = Lanes::start(2);
        let live = Liveness::default();
        lanes.watch(&live);
        assert_eq!(live.check().await, Ok(()));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (entered, is_blocked) = tokio::sync::oneshot::channel();
        lanes.hand_over(server, move |_tcp| async move {
            let _ = entered.send(());
            // Blocks the thread, as a handler doing blocking work on a lane would.
            let _ = blocked.recv();
        });
        is_blocked.await.unwrap();
        let started = std::time::Instant::now();
        let e = live.check().await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(e, "the webhook thread webhook-0 did not answer within 500 ms (something blocks it)");
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");

        release.send(()).unwrap();
        let mut live_again = Err(String::new());
        for _ in 0..50 {
            live_again = live.check().await;
            if live_again.is_ok() {
                break;
            }
        }
        assert_eq!(live_again, Ok(()));
        lanes.stop().await;
        assert_eq!(live.check().await, Ok(()));
    }
}
