//! Native logging: the `log` facade, with libdatachannel bridged into it, delivered as
//! `SORA_EVENT_LOG` events to one process-wide queue chosen by the host (Python's `logging`).
use crate::events::{Event, EventQueue, EventType};
use parking_lot::RwLock;
use std::sync::{Arc, Once};

/// SoraLoggingSeverity of the official SDK.
pub const VERBOSE: i32 = 0;
pub const INFO: i32 = 1;
pub const WARNING: i32 = 2;
pub const ERROR: i32 = 3;
pub const NONE: i32 = 4;

static SINK: RwLock<Option<Arc<EventQueue>>> = RwLock::new(None);

struct QueueLogger;

pub fn severity_of(level: log::Level) -> i32 {
    match level {
        log::Level::Error => ERROR,
        log::Level::Warn => WARNING,
        log::Level::Info => INFO,
        log::Level::Debug | log::Level::Trace => VERBOSE,
    }
}

pub fn filter_of(severity: i32) -> Option<log::LevelFilter> {
    Some(match severity {
        VERBOSE => log::LevelFilter::Trace,
        INFO => log::LevelFilter::Info,
        WARNING => log::LevelFilter::Warn,
        ERROR => log::LevelFilter::Error,
        NONE => log::LevelFilter::Off,
        _ => return None,
    })
}

impl log::Log for QueueLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Some(q) = SINK.read().as_ref() {
            q.push(
                Event::new(EventType::Log, 0)
                    .a(severity_of(record.level()) as i64)
                    .text(&record.args().to_string())
                    .text2(record.target()),
            );
        }
    }
    fn flush(&self) {}
}

static LOGGER: QueueLogger = QueueLogger;

pub fn ensure_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = log::set_logger(&LOGGER);
        // The shim's own warnings and errors always reach the host. libdatachannel only
        // forwards errors by default (libjuice warns about every unusable interface); the
        // host asks for more with set_level.
        log::set_max_level(SHIM_FLOOR);
        crate::rtc::set_native_log_level(log::LevelFilter::Error);
    });
}

pub fn set_queue(q: Option<Arc<EventQueue>>) {
    ensure_init();
    *SINK.write() = q;
}

/// Level below which the shim's own records are never filtered out natively.
const SHIM_FLOOR: log::LevelFilter = log::LevelFilter::Warn;

/// Sets how much is forwarded: libdatachannel exactly `filter`, the shim `filter` but never
/// less than its warnings and errors (they report dropped input and failures).
pub fn set_level(filter: log::LevelFilter) {
    ensure_init();
    log::set_max_level(filter.max(SHIM_FLOOR));
    crate::rtc::set_native_log_level(filter);
}
