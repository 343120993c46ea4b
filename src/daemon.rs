//! The running daemon. For now: install the signal handlers and serve until SIGINT or
//! SIGTERM, holding the instance lock. The relay link lands here next.

use crate::config::Config;
use crate::credentials::Credentials;

/// Run until a shutdown signal; returns the exit code.
pub fn run(cfg: &Config, _creds: &Credentials) -> i32 {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            crate::log_error!("cannot install signal handlers: {e}");
            return crate::app::EXIT_FAILED;
        }
    };
    crate::log_info!(
        "daemon started for node {:?} (relay {}, config {})",
        cfg.node_name,
        cfg.bridge_url,
        cfg.config_dir.display()
    );
    if let Some(sig) = signals.forever().next() {
        crate::log_info!("signal {sig} received; shutting down");
    }
    crate::app::EXIT_OK
}
