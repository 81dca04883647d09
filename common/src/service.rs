//! What every long-running Skidder service needs besides its own work:
//! a shutdown signal and Prometheus text exposition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once SIGTERM or SIGINT arrives. Cheap to clone and poll.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag raised by SIGTERM and SIGINT.
    pub fn on_signals() -> std::io::Result<Self> {
        let s = Shutdown::default();
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, s.0.clone())?;
        }
        Ok(s)
    }

    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Renders a registry in Prometheus' text format.
pub fn render_metrics(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}
