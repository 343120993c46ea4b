//! Per-session settings sidecar: `<config_dir>/sessions/<id>.json` with
//! `{provider, cwd, model, permission_mode, effort}`, so that resuming a session from
//! history restores what the transcript cannot carry. Written with the same private,
//! atomic write as the credentials.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest sidecar read back.
const MAX_BYTES: u64 = 64 * 1024;

fn path(config_dir: &Path, id: &str) -> Option<PathBuf> {
    crate::sessions::valid_id(id).then(|| config_dir.join("sessions").join(format!("{id}.json")))
}

/// Save `settings` for session `id` (errors are logged, never fatal).
pub fn save(config_dir: &Path, id: &str, settings: &Value) {
    let Some(p) = path(config_dir, id) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        if let Some(dir) = p.parent() {
            crate::fsutil::ensure_private_dir(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?;
        crate::fsutil::write_private_file(&p, &bytes)
    };
    if let Err(e) = write() {
        crate::log_warn!(
            "cannot save the settings of session {id} in {}: {e}",
            p.display()
        );
    }
}

/// The saved settings of session `id`, if any and readable.
pub fn load(config_dir: &Path, id: &str) -> Option<Value> {
    let p = path(config_dir, id)?;
    let meta = std::fs::metadata(&p).ok()?;
    if meta.len() > MAX_BYTES {
        return None;
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
    v.is_object().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_bad_ids() {
        let dir = std::env::temp_dir().join(format!("cba-sidecar-{}", std::process::id()));
        let v = json!({"provider": "claude", "model": "opus"});
        save(&dir, "abc-1", &v);
        assert_eq!(load(&dir, "abc-1"), Some(v));
        save(&dir, "../evil", &json!({}));
        assert!(!dir.join("evil.json").exists());
        assert_eq!(load(&dir, "../evil"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
