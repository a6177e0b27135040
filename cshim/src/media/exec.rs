//! Where media pipelines run: tasks on one process-wide runtime with a fixed number of
//! worker threads (the cores, at least 2), so the thread count does not grow with tracks or
//! connections. A pipeline is an async loop over its input channel and its own next
//! deadline (jitter buffer, NACK, RTCP timers); tokio's timer wheel coalesces the
//! deadlines of all pipelines. `TaskEnd` lets synchronous code wait until a pipeline has
//! really stopped (nothing reaches its sinks afterwards).
use std::future::Future;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

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
}

/// The next input of `rx`, or `Deadline` at `deadline`, whichever comes first.
pub async fn next_input<T>(rx: &mut UnboundedReceiver<T>, deadline: Instant) -> Wake<T> {
    tokio::select! {
        input = rx.recv() => input.map_or(Wake::Closed, Wake::Input),
        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => Wake::Deadline,
    }
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
