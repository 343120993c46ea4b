//! Approvals: each permission request is a message with Allow / Deny buttons
//! (AskUserQuestion: one button per option); a press answers the session, and the
//! decision (or a timeout, or a new conversation) edits the message and removes its
//! buttons. Buttons carry a number that only this run of the daemon handed out, so a
//! forged or stale press finds nothing and does nothing. Runs on the hub thread, like
//! all of [`super`]; the bots' own threads are in [`crate::channels::runner`].

use std::path::Path;

use serde_json::{Map, Value, json};

use super::replies::{CREATE_TRIES, MAX_MESSAGE, clip_units, tool_line};
use super::routing::command_for;
use super::{Channels, Chat};
use crate::channels::runner::{Call, Tag};
use crate::policy::Subject;
use crate::policy::scope::Scope;
use crate::protocol::commands::{Command, Kind, Origin, Resolve};
use crate::protocol::events::Decision;

/// An approval shown in a chat.
pub(super) struct Approval {
    request_id: String,
    message_id: Option<i64>,
    /// The message as sent (sent again when sending failed).
    body: Value,
    tries: u32,
    /// Decided before its message id was known: shown once it is.
    outcome: Option<String>,
    /// Its message was dropped by a full send queue: sent again on the next tick.
    pub(super) unsent: bool,
    /// What was asked (shown again with the decision).
    summary: String,
    /// AskUserQuestion: the questions and their option labels, and the picks so far.
    questions: Vec<(String, Vec<String>)>,
    picks: Vec<Option<String>>,
}

impl Channels {
    /// `permission.request`: a message with buttons (the reply so far goes out first).
    pub(super) fn show_approval(
        &mut self,
        bot: &str,
        chat: i64,
        (rid, tool, input): (&str, Option<&str>, &Value),
        calls: &mut Vec<Call>,
    ) {
        let rid = rid.to_string();
        let tool = tool.unwrap_or("A tool");
        let raw = input;
        let input = Some(input);
        let questions: Vec<(String, Vec<String>)> = input
            .and_then(|i| i.get("questions"))
            .and_then(Value::as_array)
            .map(|qs| {
                qs.iter()
                    .take(4)
                    .map(|q| {
                        let text = q.get("question").and_then(Value::as_str).unwrap_or("");
                        let options = q
                            .get("options")
                            .and_then(Value::as_array)
                            .map(|o| {
                                o.iter()
                                    .take(8)
                                    .filter_map(|o| o.get("label").and_then(Value::as_str))
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default();
                        (text.to_string(), options)
                    })
                    .filter(|(_, o): &(String, Vec<String>)| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let n = self.number();
        let mut rows = Vec::new();
        let (text, summary) = if tool == "AskUserQuestion" && !questions.is_empty() {
            let mut text = String::from("❓ The agent asks:");
            for (qi, (q, options)) in questions.iter().enumerate() {
                text.push_str(&format!("\n\n{q}"));
                for (oi, label) in options.iter().enumerate() {
                    let shown = if questions.len() > 1 {
                        format!("{}. {}", qi + 1, clip_units(label, 40))
                    } else {
                        clip_units(label, 48)
                    };
                    rows.push(
                        json!([{"text": shown, "callback_data": format!("q:{n}:{qi}:{oi}")}]),
                    );
                }
            }
            rows.push(json!([{"text": "Dismiss", "callback_data": format!("d:{n}")}]));
            let summary = questions
                .iter()
                .map(|(q, _)| q.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            (text, summary)
        } else {
            rows.push(json!([
                {"text": "Allow", "callback_data": format!("a:{n}")},
                {"text": "Deny", "callback_data": format!("d:{n}")},
            ]));
            // A grant for what is like it (same tool, command prefix or directory), when
            // one can be made and no rule of the node asks for this every time; the
            // message says what it would cover.
            let subject = Subject::of(raw, Path::new("/"), None);
            let asked_by_rule = self
                .policy
                .decide(tool, &subject)
                .is_some_and(|r| r.decision == crate::policy::Decision::Ask);
            let scope = Scope::of(tool, &subject).filter(|_| !asked_by_rule);
            let label = self.grant_label();
            if scope.is_some() {
                rows.push(json!([{"text": format!("Allow for {label}"),
                                  "callback_data": format!("g:{n}")}]));
            }
            let summary = format!("{tool}{}", tool_line(input));
            let covers = scope
                .map(|s| {
                    format!(
                        "\n\n“Allow for {label}” also allows {tool} for {} in this session.",
                        s.describe()
                    )
                })
                .unwrap_or_default();
            (format!("🔐 Approve {summary}?{covers}"), summary)
        };
        let picks = vec![None; questions.len()];
        let body = json!({"chat_id": chat, "text": clip_units(&text, MAX_MESSAGE),
                          "reply_markup": {"inline_keyboard": rows}});
        let approval = Approval {
            request_id: rid,
            message_id: None,
            body: body.clone(),
            tries: 0,
            outcome: None,
            unsent: false,
            summary: clip_units(&summary, 1000),
            questions,
            picks,
        };
        if let Some(c) = self.chat_mut(bot, chat) {
            // Anything the chat showed so far comes before the question.
            c.flush_reply(chat, calls);
            c.approvals.insert(n, approval);
        }
        calls.push(Call {
            method: "sendMessage",
            body,
            tag: Some(Tag::Approval { chat, number: n }),
        });
    }

    /// A button press: the answer for the session, when it is for an open approval.
    pub(super) fn on_button(&mut self, bot_id: &str, q: &Value) -> Vec<Command> {
        let qid = q.get("id").cloned().unwrap_or(Value::Null);
        let from = q.pointer("/from/id").and_then(Value::as_i64).unwrap_or(0);
        let chat = q
            .pointer("/message/chat/id")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let data = q.get("data").and_then(Value::as_str).unwrap_or("");
        let answer = |this: &mut Self, text: &str| {
            this.call(
                bot_id,
                "answerCallbackQuery",
                json!({"callback_query_id": qid, "text": text}),
            );
        };
        let allowed = self
            .bots
            .get(bot_id)
            .is_some_and(|b| b.cfg.allowed_senders.contains(&from));
        if !allowed {
            crate::log_info!("telegram {bot_id}: a button press from {from} refused (not allowed)");
            answer(self, "You are not allowed to answer this.");
            return Vec::new();
        }
        let Some(press) = Press::parse(data) else {
            answer(self, "This request is settled already.");
            return Vec::new();
        };
        let Some(key) = self
            .bots
            .get(bot_id)
            .and_then(|b| b.chats.get(&chat))
            .and_then(|c| c.key.clone())
        else {
            answer(self, "This request is settled already.");
            return Vec::new();
        };
        let Some(a) = self
            .bots
            .get_mut(bot_id)
            .and_then(|b| b.chats.get_mut(&chat))
            .and_then(|c| c.approvals.get_mut(&press.number()))
            .filter(|a| a.outcome.is_none())
        else {
            answer(self, "This request is settled already.");
            return Vec::new();
        };
        let grant = matches!(press, Press::Grant(_));
        let (allow, reply) = match press {
            Press::Allow(_) | Press::Grant(_) => (true, None),
            Press::Deny(_) => (false, None),
            Press::Pick(_, qi, oi) => {
                let Some(label) = a.questions.get(qi).and_then(|(_, o)| o.get(oi)).cloned() else {
                    answer(self, "Unknown option.");
                    return Vec::new();
                };
                a.picks[qi] = Some(label.clone());
                if a.picks.iter().any(Option::is_none) {
                    answer(
                        self,
                        &format!("Noted: {label}. Answer the other questions too."),
                    );
                    return Vec::new();
                }
                let answers: Map<String, Value> = a
                    .questions
                    .iter()
                    .zip(&a.picks)
                    .map(|((q, _), p)| (q.clone(), json!(p.clone().unwrap_or_default())))
                    .collect();
                (true, Some(json!({"answers": answers})))
            }
        };
        let request_id = a.request_id.clone();
        answer(self, if allow { "Allowed" } else { "Denied" });
        vec![command_for(
            &key,
            Kind::PermissionResolve(Resolve {
                request_id,
                allow,
                answer: reply,
                grant,
            }),
            Origin::Chat {
                chat,
                user: Some(from),
            },
        )]
    }

    /// `permission.resolved`: the approval's message shows the decision (edited once
    /// its message id is known).
    pub(super) fn approval_resolved(
        &mut self,
        bot: &str,
        chat: i64,
        (rid, decision, why): (&str, Decision, Option<&str>),
        calls: &mut Vec<Call>,
    ) {
        let why = why.unwrap_or("");
        let Some(c) = self.bots.get_mut(bot).and_then(|b| b.chats.get_mut(&chat)) else {
            return;
        };
        let Some(n) = c
            .approvals
            .iter()
            .find(|(_, a)| a.request_id == rid)
            .map(|(n, _)| *n)
        else {
            return;
        };
        let Some(a) = c.approvals.get_mut(&n) else {
            return;
        };
        let picked: Vec<String> = a.picks.iter().flatten().cloned().collect();
        let shown = match (decision, why) {
            (Decision::Allow, _) if !picked.is_empty() => {
                format!("✅ Answered: {}\n{}", picked.join(", "), a.summary)
            }
            (Decision::Allow, _) => match self.grants.iter().find(|g| g.request_id == rid) {
                Some(g) => format!(
                    "✅ Allowed until {} UTC: {} {} in this session\n{}",
                    g.until_hm, g.tool, g.scope, a.summary
                ),
                None => format!("✅ Allowed\n{}", a.summary),
            },
            (_, "timeout") => format!("⌛ No answer in time: denied\n{}", a.summary),
            (Decision::Cancelled, _) => format!("Withdrawn\n{}", a.summary),
            _ => format!("⛔ Denied\n{}", a.summary),
        };
        match a.message_id {
            Some(id) => {
                calls.push(decision_edit(chat, id, &shown));
                c.approvals.remove(&n);
            }
            // Its message is on the way: edited when its id is known.
            None => a.outcome = Some(shown),
        }
    }
}

impl Chat {
    /// The answer to an approval's `sendMessage`: its message id (an outcome decided
    /// meanwhile is shown now), or a failure (sent again a few times).
    pub(super) fn approval_answered(
        &mut self,
        bot: &str,
        chat: i64,
        number: u64,
        id: Option<i64>,
        calls: &mut Vec<Call>,
    ) {
        let Some(a) = self.approvals.get_mut(&number) else {
            return;
        };
        match (id, a.outcome.clone()) {
            (Some(id), None) => a.message_id = Some(id),
            (Some(id), Some(text)) => {
                calls.push(decision_edit(chat, id, &text));
                self.approvals.remove(&number);
            }
            (None, outcome) => {
                a.tries += 1;
                if outcome.is_none() && a.tries < CREATE_TRIES {
                    calls.push(Call {
                        method: "sendMessage",
                        body: a.body.clone(),
                        tag: Some(Tag::Approval { chat, number }),
                    });
                } else {
                    crate::log_warn!(
                        "telegram {bot}: an approval could not be shown in chat {chat}"
                    );
                    self.approvals.remove(&number);
                }
            }
        }
    }

    /// Send again the approvals a full send queue dropped.
    pub(super) fn resend_unsent(&mut self, chat: i64, calls: &mut Vec<Call>) {
        for (n, a) in self.approvals.iter_mut().filter(|(_, a)| a.unsent) {
            a.unsent = false;
            calls.push(Call {
                method: "sendMessage",
                body: a.body.clone(),
                tag: Some(Tag::Approval { chat, number: *n }),
            });
        }
    }

    /// A new conversation: the open questions are withdrawn (closing the session cancels
    /// them). One whose message is still on its way is edited when it arrives.
    pub(super) fn withdraw_approvals(&mut self, chat: i64, calls: &mut Vec<Call>) {
        self.approvals.retain(|_, a| {
            let text = format!("Withdrawn: a new conversation started\n{}", a.summary);
            match a.message_id {
                Some(id) => {
                    calls.push(decision_edit(chat, id, &text));
                    false
                }
                None => {
                    a.outcome = Some(text);
                    a.unsent = false;
                    true
                }
            }
        });
    }
}

/// A button press: `a:<n>` allow, `g:<n>` allow with a grant, `d:<n>` deny,
/// `q:<n>:<question>:<option>` a pick.
enum Press {
    Allow(u64),
    Grant(u64),
    Deny(u64),
    Pick(u64, usize, usize),
}

impl Press {
    fn parse(data: &str) -> Option<Press> {
        let mut parts = data.split(':');
        let kind = parts.next()?;
        let n = parts.next()?.parse().ok()?;
        let press = match kind {
            "a" => Press::Allow(n),
            "g" => Press::Grant(n),
            "d" => Press::Deny(n),
            "q" => Press::Pick(n, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?),
            _ => return None,
        };
        parts.next().is_none().then_some(press)
    }

    fn number(&self) -> u64 {
        match self {
            Press::Allow(n) | Press::Grant(n) | Press::Deny(n) | Press::Pick(n, ..) => *n,
        }
    }
}

/// The edit that shows an approval's outcome and removes its buttons.
fn decision_edit(chat: i64, message_id: i64, text: &str) -> Call {
    Call {
        method: "editMessageText",
        body: json!({"chat_id": chat, "message_id": message_id,
                     "text": clip_units(text, MAX_MESSAGE),
                     "reply_markup": {"inline_keyboard": []}}),
        tag: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use crossbeam_channel::Sender;

    use super::super::saved::Saved;
    use super::super::{Bot, Channels};
    use super::*;
    use crate::channels::config;
    use crate::protocol::events::{Event, SessionEvent};
    use crate::sys::saver::Saver;

    #[test]
    fn presses_parse_strictly() {
        assert!(matches!(Press::parse("a:12"), Some(Press::Allow(12))));
        assert!(matches!(
            Press::parse("q:12:1:3"),
            Some(Press::Pick(12, 1, 3))
        ));
        for bad in ["a:forged-request", "a:1:2", "x:1", "", "q:1:2", "d:"] {
            assert!(Press::parse(bad).is_none(), "{bad}");
        }
    }

    /// Channels with one bot "b" whose send queue is `queue` (no threads).
    fn channels_with(queue: Sender<Call>) -> Channels {
        let cfg = config::parse(
            "[[channels.telegram]]\ninstance_id = \"b\"\ntoken_env = \"T\"\nallowed_senders = [1]\n",
        )
        .unwrap()
        .remove(0);
        let (handled, _) = crossbeam_channel::unbounded();
        let bot = Bot {
            cfg,
            calls: queue,
            handled,
            stopped: false,
            username: None,
            chats: HashMap::new(),
            seen: VecDeque::new(),
            rate: HashMap::new(),
        };
        Channels {
            bots: HashMap::from([("b".to_string(), bot)]),
            owners: HashMap::from([("s1".to_string(), ("b".to_string(), 1))]),
            saved: Saved::default(),
            state_path: std::env::temp_dir().join(format!("cba-chats-{}.json", std::process::id())),
            saver: Saver::inline(),
            next_number: 100,
            agent_states: HashMap::new(),
            grants: Vec::new(),
            grant_for: std::time::Duration::from_secs(3600),
            policy: Default::default(),
        }
    }

    #[test]
    fn an_approval_dropped_by_a_full_queue_is_sent_on_the_next_tick() {
        // A queue with no room: every call is dropped.
        let (full, _keep) = crossbeam_channel::bounded(0);
        let mut ch = channels_with(full);
        ch.on_session_event(&SessionEvent::new(
            "s1",
            None,
            Event::PermissionRequest {
                request_id: "r1".into(),
                tool: Some("Bash".into()),
                input: json!({"command": "ls"}),
                title: None,
                display_name: None,
                description: None,
                tool_use_id: None,
                input_truncated: false,
            },
        ));
        let c = &ch.bots["b"].chats[&1];
        assert_eq!(c.approvals.len(), 1, "kept, not given up");
        assert!(ch.wants_tick());
        // Room again: the tick sends it.
        let (tx, rx) = crossbeam_channel::unbounded();
        ch.bots.get_mut("b").unwrap().calls = tx;
        ch.on_tick();
        let sent: Vec<Call> = rx.try_iter().collect();
        assert!(
            sent.iter().any(|c| c.method == "sendMessage"
                && c.body["text"].as_str().unwrap_or("").contains("ls")),
            "{sent:?}"
        );
        assert!(!ch.wants_tick());
        let _ = std::fs::remove_file(&ch.state_path);
    }

    #[test]
    fn a_session_closed_mid_turn_leaves_its_reply_finished() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ch = channels_with(tx);
        ch.on_session_event(&SessionEvent::new(
            "s1",
            None,
            Event::TextDelta {
                text: "half an answer".into(),
                id: "i1".into(),
            },
        ));
        let c = ch.bots.get_mut("b").unwrap().chats.get_mut(&1).unwrap();
        assert!(c.reply.is_some());
        c.key = Some("s1".into());
        ch.on_session_event(&SessionEvent::new("s1", None, Event::Closed));
        let c = &ch.bots["b"].chats[&1];
        assert!(c.reply.is_none(), "the old reply was left open");
        let sent: Vec<Call> = rx.try_iter().collect();
        assert!(
            sent.iter().any(|c| c.body["text"]
                .as_str()
                .unwrap_or("")
                .contains("half an answer")),
            "what streamed was shown: {sent:?}"
        );
        let _ = std::fs::remove_file(&ch.state_path);
    }
}
