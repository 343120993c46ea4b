//! Per-session settings sidecar: `<config_dir>/sessions/<id>.json` with
//! `{version, provider, cwd, model, resolved_model, permission_mode, effort}`, so that
//! resuming a session from history restores what the transcript cannot carry. `model` is
//! the launch selector the user chose (`""` for the default), never a resolved id; a file
//! of a newer `version` than [`VERSION`] is not trusted. Written with the same private,
//! atomic write as the credentials.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::protocol::SessionId;

/// The sidecar schema this build writes and reads.
pub const VERSION: u64 = 1;

/// Largest sidecar read back.
const MAX_BYTES: u64 = 64 * 1024;

fn path(config_dir: &Path, id: &SessionId) -> PathBuf {
    config_dir.join("sessions").join(format!("{id}.json"))
}

/// Save `settings` for session `id` (errors are logged, never fatal).
pub fn save(config_dir: &Path, id: &SessionId, settings: &Value) {
    let p = path(config_dir, id);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = p.parent() {
            crate::sys::fsutil::ensure_private_dir(dir)?;
        }
        let mut body = settings.clone();
        if let Some(map) = body.as_object_mut() {
            map.insert("version".into(), VERSION.into());
        }
        let bytes = serde_json::to_vec_pretty(&body).map_err(std::io::Error::other)?;
        crate::sys::fsutil::write_private_file(&p, &bytes)
    };
    if let Err(e) = write() {
        crate::log_warn!(
            "cannot save the settings of session {id} in {}: {e}",
            p.display()
        );
    }
}

/// The saved settings of session `id`, if any and readable.
pub fn load(config_dir: &Path, id: &SessionId) -> Option<Value> {
    let p = path(config_dir, id);
    let meta = std::fs::metadata(&p).ok()?;
    if meta.len() > MAX_BYTES {
        return None;
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
    let version = v.get("version").and_then(Value::as_u64).unwrap_or(1);
    if version > VERSION {
        crate::log_warn!(
            "ignoring the settings of session {id}: {} is of a newer format ({version})",
            p.display()
        );
        return None;
    }
    v.is_object().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_bad_ids() {
        let dir = std::env::temp_dir().join(format!("cba-sidecar-{}", std::process::id()));
        let id = |s: &str| SessionId::parse(s).unwrap();
        let v = json!({"provider": "claude", "model": "opus"});
        save(&dir, &id("abc-1"), &v);
        let mut expected = v.clone();
        expected["version"] = json!(VERSION);
        assert_eq!(load(&dir, &id("abc-1")), Some(expected));
        save(&dir, &id("abc-2"), &json!({"version": VERSION + 1}));
        std::fs::write(
            dir.join("sessions/abc-2.json"),
            json!({"version": VERSION + 1, "model": "x"}).to_string(),
        )
        .unwrap();
        assert_eq!(
            load(&dir, &id("abc-2")),
            None,
            "a newer format is not trusted"
        );
        // Nothing can be saved under a bad id: there is no SessionId of it.
        assert_eq!(SessionId::parse("../evil"), None);
        assert!(!dir.join("evil.json").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
