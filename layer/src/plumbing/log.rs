//! The layer's log: `tracing` events to stderr, each line prefixed with the
//! layer's name so that users can tell its lines from the application's.
//!
//! The layer links its own copy of `tracing`, so its subscriber is separate
//! from any the application installs. The filter comes from the settings of
//! the latest instance (`SYNCFILE_WSI_LOG`).

use std::io::{self, Write};
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

const PREFIX: &[u8] = b"syncfile-wsi: ";

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Writes each formatted event as one prefixed write to stderr, so that
/// lines from several threads do not interleave.
struct Prefixed;

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut line = Vec::with_capacity(PREFIX.len() + buf.len());
        line.extend_from_slice(PREFIX);
        line.extend_from_slice(buf);
        io::stderr().lock().write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Applies `filter` (already checked to parse), installing the subscriber
/// the first time.
pub fn configure(filter: &str) {
    let make = || EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    if let Some(handle) = FILTER.get() {
        // The subscriber outlives every instance, so a failure here can only
        // mean it is gone, and then there is nothing to log to.
        let _ = handle.reload(make());
        return;
    }
    let (layer, handle) = reload::Layer::new(make());
    let subscriber = Registry::default().with(layer).with(
        fmt::layer()
            .with_writer(|| Prefixed)
            .with_target(false)
            .without_time()
            .with_ansi(false),
    );
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = FILTER.set(handle);
    }
}
