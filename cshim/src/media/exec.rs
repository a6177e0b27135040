//! Where media pipelines run: tasks on one process-wide runtime with a fixed number of
//! worker threads (the cores, at least 2), so the thread count does not grow with tracks or
//! connections. A pipeline is an async loop over its input channel and its own next
//! deadline (jitter buffer, NACK, RTCP timers); tokio's timer wheel coalesces the
//! deadlines of all pipelines. `TaskEnd` lets synchronous code wait until a pipeline has
//! really stopped (nothing reaches its sinks afterwards).
use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;

/// How long stopping a pipeline waits for its task's last step (a frame being coded).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Worker threads of the media runtime: one per core, at least 2 and at most 16.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 16)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("sora-media")
            .enable_time()
            .build()
            .expect("media runtime")
    })
}

/// Signalled when the task it belongs to has finished (or was dropped).
pub struct TaskEnd(mpsc::Receiver<()>);

impl TaskEnd {
    /// Blocks until the task has finished, at most `timeout`; true when it has. Never call
    /// it from a media task (it could wait for itself).
    pub fn wait(&self, timeout: Duration) -> bool {
        matches!(self.0.recv_timeout(timeout), Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected))
    }
}

impl TaskEnd {
    /// Waits until the task has finished (at most [`STOP_WAIT`]); logs when it has not.
    /// `what` names the pipeline in that warning.
    pub fn finish(self, what: std::fmt::Arguments) {
        if !self.wait(STOP_WAIT) {
            log::warn!("{what} did not stop within {STOP_WAIT:?}");
        }
    }
}

/// What woke a pipeline's loop.
pub enum Wake<T> {
    Input(T),
    /// Every sender of its input channel is gone.
    Closed,
    Deadline,
    /// Its [`Inbox`] has packets.
    Batch,
}

/// A pipeline's deadline timer, re-armed only when the deadline moves: a new timer per
/// input would insert into and remove from the timer wheel for every packet.
pub struct Timer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    at: Instant,
}

impl Timer {
    pub fn new() -> Timer {
        let at = Instant::now() + Duration::from_secs(3600);
        Timer { sleep: Box::pin(tokio::time::sleep_until(at.into())), at }
    }

    fn arm(&mut self, at: Instant) {
        if at != self.at {
            self.at = at;
            self.sleep.as_mut().reset(at.into());
        }
    }
}

/// The next input of `rx`, a batch in `inbox`, or `Deadline` at `deadline`, whichever
/// comes first.
pub async fn next_input<T>(rx: &mut UnboundedReceiver<T>, inbox: Option<&Inbox>, timer: &mut Timer,
                           deadline: Instant) -> Wake<T> {
    timer.arm(deadline);
    tokio::select! {
        input = rx.recv() => input.map_or(Wake::Closed, Wake::Input),
        _ = async {
            match inbox {
                Some(inbox) => inbox.ready().await,
                None => std::future::pending().await,
            }
        } => Wake::Batch,
        _ = timer.sleep.as_mut() => Wake::Deadline,
    }
}

/// How long received audio packets may wait to be handled together (see [`Inbox`]).
pub const BATCH_WINDOW: Duration = Duration::from_millis(4);

/// Packets for one pipeline, collected without waking it. Waking a pipeline from the
/// thread that received a packet can unpark a media worker for every packet (hundreds of
/// receivers: thousands of wake-ups a second).
/// Instead the first packet of a batch registers the inbox with one shared ticker, which
/// wakes every pipeline with packets at most [`BATCH_WINDOW`] later, from a media worker:
/// one cross-thread wake-up per window for all of them.
pub struct Inbox {
    /// Each packet with the instant it arrived (jitter is measured from arrivals, not
    /// from when the batch was handled).
    packets: parking_lot::Mutex<Vec<(Instant, Vec<u8>)>>,
    ready: Notify,
}

impl Inbox {
    pub fn new() -> Arc<Inbox> {
        Arc::new(Inbox { packets: parking_lot::Mutex::new(Vec::new()), ready: Notify::new() })
    }

    pub fn push(self: &Arc<Self>, packet: &[u8]) {
        let arrival = Instant::now();
        let first = {
            let mut q = self.packets.lock();
            q.push((arrival, packet.to_vec()));
            q.len() == 1
        };
        if first {
            ticker().schedule(self.clone());
        }
    }

    /// The packets collected so far, in arrival order.
    pub fn take(&self) -> Vec<(Instant, Vec<u8>)> {
        std::mem::take(&mut *self.packets.lock())
    }

    /// Resolves when the ticker says packets are waiting (a wake-up that came while nobody
    /// waited is kept for the next call).
    pub async fn ready(&self) {
        self.ready.notified().await
    }
}

struct Ticker {
    due: parking_lot::Mutex<Vec<Arc<Inbox>>>,
    wake: Notify,
}

impl Ticker {
    fn schedule(&self, inbox: Arc<Inbox>) {
        let first = {
            let mut due = self.due.lock();
            due.push(inbox);
            due.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
    }

    async fn run(&'static self) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(BATCH_WINDOW).await;
            let due = std::mem::take(&mut *self.due.lock());
            for inbox in due {
                inbox.ready.notify_one();
            }
        }
    }
}

fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<Ticker> = OnceLock::new();
    let mut started = false;
    let t = TICKER.get_or_init(|| {
        started = true;
        Ticker { due: parking_lot::Mutex::new(Vec::new()), wake: Notify::new() }
    });
    if started {
        runtime().spawn(t.run());
    }
    t
}

/// Runs `task` on the media runtime.
pub fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> TaskEnd {
    let (done, end) = mpsc::sync_channel(1);
    runtime().spawn(async move {
        task.await;
        let _ = done.send(());
    });
    TaskEnd(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_tasks_share_the_workers() {
        let ends: Vec<TaskEnd> = (0..200)
            .map(|_| spawn(async { tokio::time::sleep(Duration::from_millis(20)).await }))
            .collect();
        assert!(ends.iter().all(|e| e.wait(Duration::from_secs(5))));
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|n| n.starts_with("sora-media"))
                    .collect()
            })
            .unwrap_or_default();
        if cfg!(target_os = "linux") {
            assert!(names.len() <= worker_threads(), "{names:?}");
        }
    }
}
