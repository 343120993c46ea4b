//! Claude Code specifics (PROTOCOL §5): finding the `claude` executable, its argv, and the
//! stream-json lines the daemon writes. Pure functions; the session logic that reads the
//! CLI's output lives in [`crate::hub::sessions`].

pub mod driver;
pub mod history;
pub mod stream;
pub mod transcript;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Turns on the CLI's file checkpoints, which `rewind_files` (an edit's "restore code")
/// needs from the very start of a session.
pub const CHECKPOINTING_ENV: &str = "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING";

/// The message the CLI gets in a denied tool call.
pub const DENY_MESSAGE: &str = "Denied by user via Coding Bridge";

/// Where to look for `claude`: the configured path, then PATH, then the usual install
/// dirs (user-local, npm-global, /usr/local, the CLI's own local install, a home
/// `node_modules`, and every nvm-managed node).
pub fn resolve(
    configured: Option<&Path>,
    path_env: Option<OsString>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(p) = configured {
        return is_executable(p).then(|| p.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = path_env
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = home {
        dirs.push(h.join(".local/bin"));
        dirs.push(h.join(".npm-global/bin"));
    }
    dirs.push(PathBuf::from("/usr/local/bin"));
    if let Some(h) = home {
        dirs.push(h.join(".claude/local"));
        dirs.push(h.join("node_modules/.bin"));
        if let Ok(versions) = std::fs::read_dir(h.join(".nvm/versions/node")) {
            let mut nvm: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("bin")).collect();
            nvm.sort();
            nvm.reverse(); // newest-looking version first
            dirs.extend(nvm);
        }
    }
    dirs.into_iter()
        .map(|d| d.join("claude"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How to start a child for a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpawnOpts {
    pub model: Option<String>,
    pub permission_mode: Option<String>,
    pub effort: Option<String>,
    pub resume: Option<String>,
    pub fork: bool,
    pub resume_at: Option<String>,
}

/// The CLI's argv (after the program name).
pub fn argv(o: &SpawnOpts) -> Vec<String> {
    let mut a: Vec<String> = [
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--permission-prompt-tool",
        "stdio",
        "--include-partial-messages",
        "--setting-sources",
        "user,project,local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(m) = &o.model {
        a.push("--model".into());
        a.push(m.clone());
    }
    if let Some(m) = &o.permission_mode {
        a.push("--permission-mode".into());
        a.push(m.clone());
    }
    if let Some(r) = &o.resume {
        a.push(format!("--resume={r}"));
        if o.fork {
            a.push("--fork-session".into());
        }
        if let Some(at) = &o.resume_at {
            a.push(format!("--resume-session-at={at}"));
        }
    }
    if let Some(e) = &o.effort {
        a.push("--effort".into());
        a.push(e.clone());
    }
    a
}

/// The environment a Claude child gets on top of the daemon's: the entrypoint label (if
/// any) and file checkpointing; and what it must not inherit (`CLAUDECODE` makes the
/// CLI believe it runs inside another Claude Code).
pub fn child_env(entrypoint: Option<&str>) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = vec![(CHECKPOINTING_ENV.to_string(), "true".to_string())];
    if let Some(e) = entrypoint {
        env.push(("CLAUDE_CODE_ENTRYPOINT".into(), e.to_string()));
    }
    (env, vec!["CLAUDECODE".to_string()])
}

/// `set_model`: a model, or none to go back to the default.
pub fn set_model(model: Option<&str>) -> Value {
    match model {
        Some(m) => json!({"subtype": "set_model", "model": m}),
        None => json!({"subtype": "set_model"}),
    }
}

/// A tool result's `content` as the browser gets it: always a string (structured content
/// JSON-encoded), with image, audio and document blocks reduced to their type and media
/// type so no base64 leaves the machine.
pub fn tool_result_content(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Null) | None => String::new(),
        Some(Value::Array(blocks)) => {
            let slim: Vec<Value> = blocks.iter().map(slim_block).collect();
            Value::Array(slim).to_string()
        }
        Some(other) => slim_block(other).to_string(),
    }
}

fn slim_block(b: &Value) -> Value {
    match b.get("type").and_then(Value::as_str) {
        Some(kind @ ("image" | "audio" | "document")) => {
            let media_type = b
                .pointer("/source/media_type")
                .or_else(|| b.get("media_type"))
                .or_else(|| b.get("mimeType"))
                .cloned()
                .unwrap_or(Value::Null);
            json!({"type": kind, "media_type": media_type})
        }
        _ => b.clone(),
    }
}

/// The last non-empty line of a stderr tail, with advice where the cause is known.
pub fn stderr_summary(tail: &str) -> Option<String> {
    let last = tail.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    let mut s: String = last.chars().take(300).collect();
    let lower = tail.to_ascii_lowercase();
    if (lower.contains("root") || lower.contains("sudo"))
        && (lower.contains("dangerously-skip-permissions") || lower.contains("bypasspermissions"))
    {
        s.push_str(
            " (the node runs as root: Claude Code refuses bypassPermissions there unless \
             IS_SANDBOX=1 is set in the daemon's environment; choose another permission mode \
             or set it)",
        );
    }
    Some(s)
}

/// A user turn for stdin. The CLI files the prompt in its transcript under `uuid`, the
/// id `rewind_files` later takes to undo that turn's file changes.
pub fn user_message(prompt: &str, uuid: &str) -> String {
    json!({
        "type": "user",
        "message": {"role": "user", "content": prompt},
        "parent_tool_use_id": null,
        "session_id": "default",
        "uuid": uuid,
    })
    .to_string()
}

/// A control request from the daemon.
pub fn control_request(request_id: &str, request: Value) -> String {
    json!({"type": "control_request", "request_id": request_id, "request": request}).to_string()
}

/// A successful answer to one of the CLI's control requests.
pub fn control_success(request_id: &str, response: Value) -> String {
    json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    })
    .to_string()
}

/// An error answer to one of the CLI's control requests.
pub fn control_error(request_id: &str, error: &str) -> String {
    json!({
        "type": "control_response",
        "response": {"subtype": "error", "request_id": request_id, "error": error},
    })
    .to_string()
}

/// The allow answer: the tool input, amended by an `AskUserQuestion` answer when given.
/// `answer` is `{"answers": {question: label | [labels]}, "response"?: text}`; lists are
/// joined with ", ". The CLI rejects an allow without `updatedInput`, so it is always set.
pub fn allow_response(input: &Value, answer: Option<&Value>) -> Value {
    let mut updated = match input {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(Value::Object(ans)) = answer {
        if let Some(Value::Object(answers)) = ans.get("answers") {
            let mut merged = match updated.get("answers") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            for (q, a) in answers {
                let text = match a {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                merged.insert(q.clone(), Value::String(text));
            }
            updated.insert("answers".into(), Value::Object(merged));
        }
        if let Some(Value::String(r)) = ans.get("response") {
            updated.insert("response".into(), Value::String(r.clone()));
        }
    }
    json!({"behavior": "allow", "updatedInput": Value::Object(updated)})
}

/// The deny answer.
pub fn deny_response(message: &str) -> Value {
    json!({"behavior": "deny", "message": message})
}

/// `/name rest` → `name`, for prompts that are slash commands.
pub fn slash_name(prompt: &str) -> Option<&str> {
    let p = prompt.trim_start();
    let rest = p.strip_prefix('/')?;
    let name = rest.split_whitespace().next()?;
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c)))
    .then_some(name)
}

/// `name` as the CLI's command catalogue spells it (a name or an alias, matched without
/// regard to case), or `None` when the CLI has no such command.
pub fn catalogue_match(commands: &[Value], name: &str) -> Option<String> {
    commands.iter().find_map(|c| {
        let names = std::iter::once(c.get("name")).chain(
            c.get("aliases")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Some),
        );
        names
            .flatten()
            .filter_map(Value::as_str)
            .find(|n| n.eq_ignore_ascii_case(name))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_orders_flags() {
        let a = argv(&SpawnOpts {
            model: Some("opus".into()),
            permission_mode: Some("plan".into()),
            effort: Some("high".into()),
            resume: Some("abc".into()),
            fork: true,
            resume_at: Some("u1".into()),
        });
        let s = a.join(" ");
        assert!(s.starts_with("--output-format stream-json --verbose --input-format stream-json --permission-prompt-tool stdio --include-partial-messages --setting-sources user,project,local"));
        assert!(s.contains("--model opus --permission-mode plan --resume=abc --fork-session --resume-session-at=u1 --effort high"));
        assert!(!argv(&SpawnOpts::default()).join(" ").contains("--resume"));
    }

    #[test]
    fn ask_user_question_answers_are_merged() {
        let input = json!({"questions": [{"question": "Color?"}]});
        let answer =
            json!({"answers": {"Color?": ["red", "blue"], "Size?": "L"}, "response": "thanks"});
        let r = allow_response(&input, Some(&answer));
        assert_eq!(r["behavior"], "allow");
        assert_eq!(r["updatedInput"]["questions"], input["questions"]);
        assert_eq!(r["updatedInput"]["answers"]["Color?"], "red, blue");
        assert_eq!(r["updatedInput"]["answers"]["Size?"], "L");
        assert_eq!(r["updatedInput"]["response"], "thanks");
        let plain = allow_response(&json!({"command": "ls"}), None);
        assert_eq!(plain["updatedInput"], json!({"command": "ls"}));
    }

    #[test]
    fn tool_results_are_strings_without_binary_data() {
        assert_eq!(tool_result_content(Some(&json!("ok"))), "ok");
        assert_eq!(tool_result_content(None), "");
        let blocks = json!([
            {"type": "text", "text": "see"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "document", "source": {"media_type": "application/pdf", "data": "JVBER"}}
        ]);
        let s = tool_result_content(Some(&blocks));
        assert!(!s.contains("iVBOR") && !s.contains("JVBER"), "{s}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v[1], json!({"type": "image", "media_type": "image/png"}));
        assert_eq!(v[2]["media_type"], "application/pdf");
        assert_eq!(v[0]["text"], "see");
    }

    #[test]
    fn stderr_summary_is_the_last_line_with_advice() {
        assert_eq!(
            stderr_summary("a\nboom happened\n\n").as_deref(),
            Some("boom happened")
        );
        assert_eq!(stderr_summary("  \n"), None);
        let root = stderr_summary("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n").unwrap();
        assert!(root.contains("IS_SANDBOX=1"), "{root}");
    }

    #[test]
    fn slash_names() {
        assert_eq!(slash_name("/compact now"), Some("compact"));
        assert_eq!(slash_name("  /status"), Some("status"));
        assert_eq!(slash_name("/"), None);
        assert_eq!(slash_name("hello /x"), None);
        assert_eq!(slash_name("/etc/passwd is a file"), None);
        let cat = vec![json!({"name": "review", "aliases": ["rv"]})];
        assert_eq!(catalogue_match(&cat, "rv").as_deref(), Some("rv"));
        assert_eq!(catalogue_match(&cat, "RV").as_deref(), Some("rv"));
        assert_eq!(catalogue_match(&cat, "Review").as_deref(), Some("review"));
        assert_eq!(catalogue_match(&cat, "compact"), None);
    }

    #[test]
    fn resolves_configured_then_path_then_install_dirs() {
        let dir = std::env::temp_dir().join(format!("cba-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("home/.nvm/versions/node/v22.1.0/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("claude");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.join("home");
        if !Path::new("/usr/local/bin/claude").exists() {
            assert_eq!(
                resolve(None, Some("/nonexistent".into()), Some(&home)),
                Some(exe.clone())
            );
        }
        assert_eq!(resolve(Some(&exe), None, None), Some(exe.clone()));
        assert_eq!(resolve(Some(&dir.join("nope")), None, Some(&home)), None);
        let other = dir.join("pathdir");
        std::fs::create_dir_all(&other).unwrap();
        let on_path = other.join("claude");
        std::fs::write(&on_path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&on_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            resolve(None, Some(other.clone().into_os_string()), Some(&home)),
            Some(on_path)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
