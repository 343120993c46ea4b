//! What this node can do, as announced in every heartbeat: the installed providers plus
//! `history`.

use crate::config::Config;

/// The heartbeat's capability list.
pub fn heartbeat_list(cfg: &Config) -> Vec<String> {
    let mut caps = Vec::new();
    if claude_available(cfg) {
        caps.push("claude".to_string());
    }
    caps.push("history".to_string());
    caps
}

/// Whether a `claude` executable can be found (the configured path, else PATH).
pub fn claude_available(cfg: &Config) -> bool {
    if let Some(p) = &cfg.claude_path {
        return p.is_file();
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| d.join("claude").is_file()))
        .unwrap_or(false)
}
