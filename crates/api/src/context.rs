//! The agent context API's key layout and name validation (DESIGN §7), shared by the
//! client (which routes a conversation, thread or the registry by its key) and the
//! server (which stores and applies them).
//!
//! Every record is an ordinary `data` CF record under a reserved user key that starts
//! with byte 0x00 (the Kv API refuses such keys) and carries a hash tag, so snapshots,
//! resharding and TTL treat it like any other key:
//!
//! | record | user key |
//! | --- | --- |
//! | conversation | `\0C{c/<ns>/<id>}` |
//! | message | `\0M{c/<ns>/<id>}` · seq BE8 |
//! | idempotency key | `\0I{c/<ns>/<id>}` · key |
//! | checkpoint thread | `\0H{t/<thread>}` (`<thread>`: see [`stored_thread`]) |
//! | checkpoint | `\0K{t/<thread>}` · ns · 0x00 · checkpoint id |
//! | channel blob | `\0B{t/<thread>}` · ns · 0x00 · channel · 0x00 · version |
//! | pending write | `\0W{t/<thread>}` · ns · 0x00 · checkpoint id · 0x00 · task id · 0x00 · idx BE4 |
//! | model | `\0R{registry}` · name, or `\0R{registry/<namespace>}` · name |
//!
//! Tenant namespaces leave the default namespace's keys as they were before
//! namespaces existed: data written by earlier versions is the default namespace's,
//! with nothing to migrate.

use crate::error::{Error, Result};
use crate::proto::{ConversationRef, ThreadRef};

/// First byte of every key the context API owns; user keys may not start with it.
pub const RESERVED_PREFIX: u8 = 0;
/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Longest namespace, conversation id, checkpoint id, channel or model name.
pub const MAX_NAME: usize = 128;
/// Default longest checkpoint thread id and checkpoint namespace (LangGraph makes a
/// subgraph's namespace from its parents' names and task ids: about 40 bytes a level);
/// a node's `limits.max-thread-id-size` and `limits.max-checkpoint-ns-size`.
pub const MAX_THREAD: usize = 1024;
/// What `limits.max-thread-id-size` and `limits.max-checkpoint-ns-size` may be set to
/// at most; the syntax checks here (shared with the clients) stop at it, the server
/// applies its configured limit.
pub const MAX_THREAD_CAP: usize = 16 << 10;

const CONV: u8 = b'C';
const MSG: u8 = b'M';
const IDEM: u8 = b'I';
const THREAD: u8 = b'H';
const CKPT: u8 = b'K';
const BLOB: u8 = b'B';
const WRITE: u8 = b'W';
const MODEL: u8 = b'R';
const LEASE: u8 = b'E';
const QUEUE: u8 = b'Q';

fn key(kind: u8, tag: &str, rest: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + tag.len() + rest.iter().map(|r| r.len()).sum::<usize>());
    k.push(RESERVED_PREFIX);
    k.push(kind);
    k.push(b'{');
    k.extend_from_slice(tag.as_bytes());
    k.push(b'}');
    for r in rest {
        k.extend_from_slice(r);
    }
    k
}

fn conv_tag(c: &ConversationRef) -> String {
    format!("c/{}/{}", c.namespace, c.id)
}

/// Stands for `}` inside a thread's hash tag, where a `}` would end the tag (thread
/// ids may hold 0x02 too: [`escape`] writes theirs as 0x03 'B').
const CLOSE_BRACE: char = '\u{2}';

/// Starts an escape in a thread id or checkpoint namespace inside a key.
const ESCAPE: char = '\u{3}';

/// A thread id or checkpoint namespace as it goes into keys: 0x00 (the end of a
/// namespace in checkpoint keys), 0x01 (the tenant separator), 0x02 (the stand-in
/// for `}`) and 0x03 itself become 0x03 followed by '@', 'A', 'B', 'C'. A name without
/// them (every name earlier versions accepted) is unchanged, so existing keys stay.
pub fn escape(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(|c| c <= ESCAPE) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c <= ESCAPE {
            out.push(ESCAPE);
            out.push(char::from(b'@' + c as u8));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The inverse of [`escape`] (an escape without a valid second character is kept
/// as it is: no key written by [`escape`] has one).
pub fn unescape(name: &str) -> String {
    if !name.contains(ESCAPE) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            (ESCAPE, Some(&e @ '@'..='C')) => {
                chars.next();
                out.push(char::from(e as u8 - b'@'));
            }
            _ => out.push(c),
        }
    }
    out
}

fn thread_tag(thread: &str) -> String {
    format!("t/{}", thread.replace('}', &CLOSE_BRACE.to_string()))
}

/// Separates a thread's tenant namespace from its id in the name it is stored under
/// (a control character: neither may contain one, so no two threads share a name).
const NAMESPACE_SEP: char = '\u{1}';

/// The name a thread is stored and routed under: its id in the default namespace
/// (""), else `namespace · 0x01 · id`, the id [`escape`]d either way.
pub fn stored_thread(namespace: &str, thread: &str) -> String {
    if namespace.is_empty() {
        escape(thread).into_owned()
    } else {
        format!("{namespace}{NAMESPACE_SEP}{}", escape(thread))
    }
}

/// `(namespace, id)` of a name made by [`stored_thread`].
pub fn split_stored_thread(stored: &str) -> (&str, String) {
    let (namespace, id) = stored.split_once(NAMESPACE_SEP).unwrap_or(("", stored));
    (namespace, unescape(id))
}

/// The name a thread's grants are matched against: `<namespace>/<id>`, or the id
/// alone in the default namespace (where tenants of earlier versions named their
/// threads `<tenant>/<id>`, so the same grant covers both).
pub fn thread_auth_name(namespace: &str, thread: &str) -> String {
    if namespace.is_empty() {
        thread.to_string()
    } else {
        format!("{namespace}/{thread}")
    }
}

/// The name a model's grants are matched against: `<namespace>/<name>`, or the name
/// alone in the default registry.
pub fn model_auth_name(namespace: &str, name: &str) -> String {
    thread_auth_name(namespace, name)
}

fn registry_tag(namespace: &str) -> String {
    if namespace.is_empty() {
        "registry".to_string()
    } else {
        format!("registry/{namespace}")
    }
}

/// `namespace/id`, for messages.
pub fn conv_name(c: &ConversationRef) -> String {
    format!("{}/{}", c.namespace, c.id)
}

/// The conversation's record.
pub fn conv_key(c: &ConversationRef) -> Vec<u8> {
    key(CONV, &conv_tag(c), &[])
}

/// `namespace/id` of a conversation record key (None: another key), as the bytes
/// after the record key's `c/` and before its closing `}`: what the node's
/// conversation index orders a namespace's conversations by.
pub fn conv_path_of(user_key: &[u8]) -> Option<&[u8]> {
    user_key
        .strip_prefix(&[RESERVED_PREFIX, CONV, b'{', b'c', b'/'][..])?
        .strip_suffix(b"}")
}

/// `namespace / id` of a thread record key (None: another key), the id as the client
/// named it (unescaped): what the node's thread index orders a namespace's threads by
/// (tenant namespaces hold no `/`).
pub fn thread_path_of(user_key: &[u8]) -> Option<Vec<u8>> {
    let tag = user_key
        .strip_prefix(&[RESERVED_PREFIX, THREAD, b'{', b't', b'/'][..])?
        .strip_suffix(b"}")?;
    let stored = std::str::from_utf8(tag).ok()?.replace(CLOSE_BRACE, "}");
    let (namespace, id) = split_stored_thread(&stored);
    Some([namespace.as_bytes(), b"/", id.as_bytes()].concat())
}

/// Message `seq` of the conversation.
pub fn msg_key(c: &ConversationRef, seq: u64) -> Vec<u8> {
    key(MSG, &conv_tag(c), &[&seq.to_be_bytes()])
}

/// Prefix of every message of the conversation.
pub fn msg_prefix(c: &ConversationRef) -> Vec<u8> {
    key(MSG, &conv_tag(c), &[])
}

/// The seq of a message key.
pub fn seq_of(user_key: &[u8]) -> Option<u64> {
    let tail = user_key.get(user_key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// An idempotency key's record.
pub fn idem_key(c: &ConversationRef, k: &str) -> Vec<u8> {
    key(IDEM, &conv_tag(c), &[k.as_bytes()])
}

/// Prefixes holding everything of a conversation except its record.
pub fn conv_data_prefixes(c: &ConversationRef) -> [Vec<u8>; 2] {
    let tag = conv_tag(c);
    [key(MSG, &tag, &[]), key(IDEM, &tag, &[])]
}

/// The thread's record.
pub fn thread_key(thread: &str) -> Vec<u8> {
    key(THREAD, &thread_tag(thread), &[])
}

/// Prefixes holding everything of a thread except its record.
pub fn thread_data_prefixes(thread: &str) -> [Vec<u8>; 3] {
    let tag = thread_tag(thread);
    [
        key(CKPT, &tag, &[]),
        key(BLOB, &tag, &[]),
        key(WRITE, &tag, &[]),
    ]
}

/// Prefix of every checkpoint record, of every thread.
pub fn all_ckpt_prefix() -> Vec<u8> {
    vec![RESERVED_PREFIX, CKPT]
}

/// `(stored thread, ns)` of a checkpoint record's key.
pub fn ckpt_ref_of(user_key: &[u8]) -> Option<(String, String)> {
    let rest = user_key.strip_prefix(all_ckpt_prefix().as_slice())?;
    let rest = rest.strip_prefix(b"{t/")?;
    let close = rest.iter().position(|&b| b == b'}')?;
    let thread = std::str::from_utf8(&rest[..close])
        .ok()?
        .replace(CLOSE_BRACE, "}");
    let after = &rest[close + 1..];
    let ns_end = after.iter().position(|&b| b == 0)?;
    let ns = unescape(std::str::from_utf8(&after[..ns_end]).ok()?);
    Some((thread, ns))
}

/// Prefix of the checkpoints of every namespace of `thread`.
pub fn thread_ckpt_prefix(thread: &str) -> Vec<u8> {
    key(CKPT, &thread_tag(thread), &[])
}

/// Prefix of the checkpoints of `(thread, ns)`.
pub fn ckpt_prefix(t: &ThreadRef) -> Vec<u8> {
    key(
        CKPT,
        &thread_tag(&t.thread),
        &[escape(&t.ns).as_bytes(), &[0]],
    )
}

/// A checkpoint's record.
pub fn ckpt_key(t: &ThreadRef, id: &str) -> Vec<u8> {
    key(
        CKPT,
        &thread_tag(&t.thread),
        &[escape(&t.ns).as_bytes(), &[0], id.as_bytes()],
    )
}

/// Prefix of the channel blobs of `(thread, ns)`.
pub fn blob_prefix(t: &ThreadRef) -> Vec<u8> {
    key(
        BLOB,
        &thread_tag(&t.thread),
        &[escape(&t.ns).as_bytes(), &[0]],
    )
}

/// One channel value at one version.
pub fn blob_key(t: &ThreadRef, channel: &str, version: &str) -> Vec<u8> {
    key(
        BLOB,
        &thread_tag(&t.thread),
        &[
            escape(&t.ns).as_bytes(),
            &[0],
            channel.as_bytes(),
            &[0],
            version.as_bytes(),
        ],
    )
}

/// `(channel, version)` of a blob key of `(thread, ns)`.
pub fn blob_of(t: &ThreadRef, user_key: &[u8]) -> Option<(String, String)> {
    let rest = user_key.strip_prefix(blob_prefix(t).as_slice())?;
    let sep = rest.iter().position(|&b| b == 0)?;
    Some((
        String::from_utf8(rest[..sep].to_vec()).ok()?,
        String::from_utf8(rest[sep + 1..].to_vec()).ok()?,
    ))
}

/// Prefix of the pending writes of one checkpoint.
pub fn writes_prefix(t: &ThreadRef, id: &str) -> Vec<u8> {
    key(
        WRITE,
        &thread_tag(&t.thread),
        &[escape(&t.ns).as_bytes(), &[0], id.as_bytes(), &[0]],
    )
}

/// One pending write.
pub fn write_key(t: &ThreadRef, id: &str, task: &str, idx: u32) -> Vec<u8> {
    let mut k = writes_prefix(t, id);
    k.extend_from_slice(task.as_bytes());
    k.push(0);
    k.extend_from_slice(&idx.to_be_bytes());
    k
}

/// A model's record in the registry of `namespace`.
pub fn model_key(namespace: &str, name: &str) -> Vec<u8> {
    key(MODEL, &registry_tag(namespace), &[name.as_bytes()])
}

/// Prefix of every model record of `namespace`'s registry (one hash tag: one shard).
pub fn model_prefix(namespace: &str) -> Vec<u8> {
    key(MODEL, &registry_tag(namespace), &[])
}

/// The user key of lease `id` of the partition of `key` (its hash tag, or the whole
/// key without one): `0x00 'E' '{' partition '}' id BE8`, so it hashes as the
/// partition does and lives in its shard. A partition holding `}` cannot hold leases
/// (the record's own tag would end early): `InvalidArgument` on `field`.
pub fn lease_key(field: &str, key: &[u8], id: u64) -> Result<Vec<u8>> {
    let partition = crate::keys::partition_key(key);
    if partition.contains(&b'}') {
        return Err(Error::invalid(
            field,
            "a partition holding `}` cannot hold leases: use a hash tag `{...}`",
        ));
    }
    let mut k = Vec::with_capacity(partition.len() + 12);
    k.extend_from_slice(&[RESERVED_PREFIX, LEASE, b'{']);
    k.extend_from_slice(partition);
    k.push(b'}');
    k.extend_from_slice(&id.to_be_bytes());
    Ok(k)
}

/// The most bytes a queue name or an enqueue's idempotency key may have.
pub const MAX_QUEUE_NAME: usize = 128;

/// Checks a queue name: 1..=128 bytes, no `}` (it goes inside the hash tag
/// `{q/NAME}`) or control characters.
pub fn validate_queue(field: &str, name: &str) -> Result<()> {
    check_name(field, name, false, &['}'])
}

fn queue_tag(name: &str) -> String {
    format!("q/{name}")
}

/// The key a client routes queue `name`'s calls by: `{q/NAME}`, the partition of all
/// of its records.
pub fn queue_route_key(name: &str) -> Vec<u8> {
    format!("{{{}}}", queue_tag(name)).into_bytes()
}

/// Queue `name`'s record (`QueueRecord`).
pub fn queue_key(name: &str) -> Vec<u8> {
    key(QUEUE, &queue_tag(name), &[])
}

/// Task `id` of queue `name` (`TaskRecord`).
pub fn queue_task_key(name: &str, id: u64) -> Vec<u8> {
    key(QUEUE, &queue_tag(name), &[b"T", &id.to_be_bytes()])
}

/// The entry of task `id` (priority `priority`) in queue `name`'s order: highest
/// priority first, then by id (FIFO).
pub fn queue_order_key(name: &str, priority: u8, id: u64) -> Vec<u8> {
    key(
        QUEUE,
        &queue_tag(name),
        &[b"R", &[u8::MAX - priority], &id.to_be_bytes()],
    )
}

/// Where queue `name`'s order entries are (`queue_order_key`).
pub fn queue_order_prefix(name: &str) -> Vec<u8> {
    key(QUEUE, &queue_tag(name), &[b"R"])
}

/// `(priority, id)` of an order entry's key.
pub fn queue_order_of(user_key: &[u8]) -> Option<(u8, u64)> {
    let (rest, id) = user_key.split_last_chunk::<8>()?;
    let inverted = *rest.last()?;
    Some((u8::MAX - inverted, u64::from_be_bytes(*id)))
}

/// Dead letter `id` of queue `name` (the task's `TaskRecord`).
pub fn queue_dead_key(name: &str, id: u64) -> Vec<u8> {
    key(QUEUE, &queue_tag(name), &[b"D", &id.to_be_bytes()])
}

/// Where queue `name`'s dead letters are.
pub fn queue_dead_prefix(name: &str) -> Vec<u8> {
    key(QUEUE, &queue_tag(name), &[b"D"])
}

/// The record of enqueue idempotency key `k` in queue `name` (the task id, BE8).
pub fn queue_idem_key(name: &str, k: &str) -> Vec<u8> {
    key(QUEUE, &queue_tag(name), &[b"I", k.as_bytes()])
}

/// Whether `user_key` is a lease record's key.
pub fn is_lease_key(user_key: &[u8]) -> bool {
    user_key.starts_with(&[RESERVED_PREFIX, LEASE, b'{'])
}

/// What a reserved key is, for purge: a conversation or thread record takes its data
/// with it.
pub enum Owner {
    /// A conversation's record.
    Conversation(ConversationRef),
    /// A checkpoint thread's record.
    Thread(String),
}

/// The conversation or thread whose record `user_key` is.
pub fn owner_of_record(user_key: &[u8]) -> Option<Owner> {
    let (&kind, rest) = user_key.strip_prefix(&[RESERVED_PREFIX])?.split_first()?;
    let tag = std::str::from_utf8(rest.strip_prefix(b"{")?.strip_suffix(b"}")?).ok()?;
    match kind {
        CONV => {
            let (ns, id) = tag.strip_prefix("c/")?.split_once('/')?;
            Some(Owner::Conversation(ConversationRef {
                namespace: ns.to_string(),
                id: id.to_string(),
            }))
        }
        THREAD => Some(Owner::Thread(
            tag.strip_prefix("t/")?.replace(CLOSE_BRACE, "}"),
        )),
        _ => None,
    }
}

fn check_name(field: &str, v: &str, allow_empty: bool, forbidden: &[char]) -> Result<()> {
    check_sized(field, v, allow_empty, forbidden, MAX_NAME)
}

fn check_sized(
    field: &str,
    v: &str,
    allow_empty: bool,
    forbidden: &[char],
    max: usize,
) -> Result<()> {
    check_length(field, v, allow_empty, max)?;
    if let Some(c) = v.chars().find(|c| c.is_control() || forbidden.contains(c)) {
        return Err(Error::invalid(
            field,
            format!(
                "must not contain {c:?} (control characters and {forbidden:?} are not allowed)"
            ),
        ));
    }
    Ok(())
}

/// Checks a conversation reference.
pub fn validate_conversation(c: Option<&ConversationRef>) -> Result<&ConversationRef> {
    let c = c.ok_or_else(|| Error::invalid("conversation", "must be set"))?;
    check_name("conversation.namespace", &c.namespace, false, &['/', '}'])?;
    check_name("conversation.id", &c.id, false, &['}'])?;
    Ok(c)
}

/// Checks a namespace (for listing).
pub fn validate_namespace(ns: &str) -> Result<()> {
    check_name("namespace", ns, false, &['/', '}'])
}

/// Checks a thread's or registry's tenant namespace ("" is the default one).
pub fn validate_tenant_namespace(field: &str, ns: &str) -> Result<()> {
    if ns.is_empty() {
        return Ok(());
    }
    check_name(field, ns, false, &['/', '}'])
}

/// Checks a thread name: any UTF-8 (keys [`escape`] what they must), not empty, at
/// most [`MAX_THREAD_CAP`] bytes (the server then applies its configured limit).
pub fn validate_thread_name(field: &str, thread: &str) -> Result<()> {
    check_length(field, thread, false, MAX_THREAD_CAP)
}

fn check_length(field: &str, v: &str, allow_empty: bool, max: usize) -> Result<()> {
    if v.is_empty() && !allow_empty {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if v.len() > max {
        return Err(Error::invalid(
            field,
            format!("at most {max} bytes, got {}", v.len()),
        ));
    }
    Ok(())
}

/// Checks a `(thread, ns)` reference: the thread as [`validate_thread_name`], the
/// checkpoint namespace any UTF-8 of at most [`MAX_THREAD_CAP`] bytes.
pub fn validate_thread(t: Option<&ThreadRef>) -> Result<&ThreadRef> {
    let t = t.ok_or_else(|| Error::invalid("thread", "must be set"))?;
    validate_thread_name("thread.thread", &t.thread)?;
    check_length("thread.ns", &t.ns, true, MAX_THREAD_CAP)?;
    validate_tenant_namespace("thread.namespace", &t.namespace)?;
    Ok(t)
}

/// Checks a checkpoint id, channel, version, task id or model name.
pub fn validate_part(field: &str, v: &str) -> Result<()> {
    check_name(field, v, false, &[])
}

/// Most run ids one `DeleteForRuns` call names.
pub const MAX_RUN_IDS: usize = 1_000;

/// Checks the run ids of one `DeleteForRuns` call: 1 to [`MAX_RUN_IDS`], each a valid
/// name (as [`validate_part`]).
pub fn validate_run_ids(ids: &[String]) -> Result<()> {
    if ids.len() > MAX_RUN_IDS {
        return Err(Error::invalid(
            "run_ids",
            format!("at most {MAX_RUN_IDS} per call, got {}", ids.len()),
        ));
    }
    run_id_calls(ids).map(|_| ())
}

/// Any number of run ids cut into `DeleteForRuns` calls, every id checked first (so
/// a bad one fails before any call is made).
pub fn run_id_calls(ids: &[String]) -> Result<std::slice::Chunks<'_, String>> {
    if ids.is_empty() {
        return Err(Error::invalid("run_ids", "name at least one run"));
    }
    ids.iter().try_for_each(|id| validate_part("run_ids", id))?;
    Ok(ids.chunks(MAX_RUN_IDS))
}

/// Whether a message is pinned (always included by budget reads that ask for it).
pub fn is_pinned(m: &crate::proto::ChatMessage) -> bool {
    m.role == "system" || m.metadata.get("pinned").is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(ns: &str, id: &str) -> ConversationRef {
        ConversationRef {
            namespace: ns.into(),
            id: id.into(),
        }
    }

    #[test]
    fn a_checkpoint_key_names_its_thread_and_namespace() {
        let t = ThreadRef {
            thread: stored_thread("acme", "a}b"),
            ns: "sub|x".into(),
            namespace: String::new(),
        };
        assert_eq!(
            ckpt_ref_of(&ckpt_key(&t, "0001")),
            Some((t.thread.clone(), "sub|x".to_string()))
        );
        assert!(ckpt_key(&t, "1").starts_with(&all_ckpt_prefix()));
        assert_eq!(ckpt_ref_of(&thread_key("x")), None);
    }

    #[test]
    fn a_brace_in_a_thread_id_stays_inside_its_tag() {
        let odd = stored_thread("", "a}b");
        assert!(validate_thread_name("thread", "a}b").is_ok());
        // Its own partition, and no prefix of thread `a`'s keys.
        let t = |thread: &str| ThreadRef {
            thread: thread.into(),
            ns: String::new(),
            namespace: String::new(),
        };
        assert_ne!(
            crate::keys::key_hash(&thread_key(&odd)),
            crate::keys::key_hash(&thread_key("a"))
        );
        assert!(!ckpt_prefix(&t("a}b")).starts_with(&ckpt_prefix(&t("a"))));
        assert!(!ckpt_key(&t("a}b"), "1").starts_with(&ckpt_prefix(&t("a"))));
        match owner_of_record(&thread_key(&odd)) {
            Some(Owner::Thread(name)) => assert_eq!(name, "a}b"),
            _ => panic!("a thread record"),
        }
        // A 16 KiB checkpoint namespace passes the syntax check (the server's
        // configured limit is below it), one byte more does not.
        let mut r = t("x");
        r.ns = "n".repeat(MAX_THREAD_CAP);
        assert!(validate_thread(Some(&r)).is_ok());
        r.ns.push('n');
        assert!(validate_thread(Some(&r)).is_err());
    }

    #[test]
    fn control_characters_in_thread_ids_and_namespaces_are_escaped_in_keys() {
        for name in ["plain", "a\0b", "\u{1}\u{2}\u{3}@A", "tab\there}", "\u{3}B"] {
            assert_eq!(unescape(&escape(name)), name);
            assert!(!escape(name).contains(['\0', '\u{1}', '\u{2}']));
        }
        assert_eq!(escape("plain"), "plain");
        assert!(validate_thread_name("thread", "a\0b\u{7}").is_ok());
        // Distinct ids stay distinct threads, and an id holding the tenant
        // separator cannot pose as a namespaced thread.
        let posing = stored_thread("", "acme\u{1}t1");
        assert_ne!(posing, stored_thread("acme", "t1"));
        assert_eq!(
            split_stored_thread(&posing),
            ("", "acme\u{1}t1".to_string())
        );
        assert_eq!(
            split_stored_thread(&stored_thread("acme", "x\u{1}y")),
            ("acme", "x\u{1}y".to_string())
        );
        assert_ne!(stored_thread("", "a\u{2}"), stored_thread("", "a}"));
        // A namespace holding 0x00 does not end early in a checkpoint key.
        let t = ThreadRef {
            thread: stored_thread("", "a\0b"),
            ns: "x\0y".into(),
            namespace: String::new(),
        };
        assert_eq!(
            ckpt_ref_of(&ckpt_key(&t, "0001")),
            Some((t.thread.clone(), "x\0y".to_string()))
        );
        let other = ThreadRef {
            ns: "x".into(),
            ..t.clone()
        };
        assert!(!ckpt_key(&t, "1").starts_with(&ckpt_prefix(&other)));
    }

    #[test]
    fn namespaces_leave_the_default_layout_alone_and_never_collide() {
        // The default namespace's keys are those of versions without namespaces.
        assert_eq!(thread_key(&stored_thread("", "t1")), b"\0H{t/t1}".to_vec());
        assert_eq!(model_key("", "gpt"), b"\0R{registry}gpt".to_vec());
        // A namespaced thread is another thread than the default namespace's thread
        // named `<namespace>/<id>`, and its own tag (another shard, maybe).
        let a = stored_thread("acme", "t1");
        assert_ne!(thread_key(&a), thread_key(&stored_thread("", "acme/t1")));
        assert_ne!(thread_key(&a), thread_key(&stored_thread("acm", "et1")));
        assert_eq!(split_stored_thread(&a), ("acme", "t1".to_string()));
        assert_eq!(split_stored_thread("t1"), ("", "t1".to_string()));
        assert_ne!(model_prefix("acme"), model_prefix(""));
        assert!(!model_key("acme", "gpt").starts_with(&model_prefix("")));
        assert!(validate_tenant_namespace("namespace", "a/b").is_err());
        assert!(validate_tenant_namespace("namespace", "").is_ok());
        // Grants see `<namespace>/<id>`.
        assert_eq!(thread_auth_name("acme", "t1"), "acme/t1");
        assert_eq!(thread_auth_name("", "acme/t1"), "acme/t1");
    }

    #[test]
    fn a_thread_record_names_its_index_path() {
        for (ns, id) in [("", "t1"), ("acme", "t1"), ("acme", "a}b\u{2}c\u{1}d/e\0")] {
            let stored = stored_thread(ns, id);
            assert_eq!(
                thread_path_of(&thread_key(&stored)),
                Some(format!("{ns}/{id}").into_bytes()),
                "{ns:?} {id:?}"
            );
            let t = ThreadRef {
                thread: stored,
                ns: String::new(),
                namespace: String::new(),
            };
            assert_eq!(thread_path_of(&ckpt_key(&t, "1")), None);
        }
        assert_eq!(thread_path_of(&conv_key(&conv("acme", "t1"))), None);
    }

    #[test]
    fn a_lease_lives_in_its_partition() {
        let k = lease_key("key", b"{svc/a}/w1", 7).expect("a tag");
        assert_eq!(
            crate::keys::key_hash(&k),
            crate::keys::key_hash(b"{svc/a}/other")
        );
        assert!(is_lease_key(&k));
        assert_ne!(k, lease_key("key", b"{svc/a}", 8).expect("a tag"));
        // A key without a tag is its own partition.
        let plain = lease_key("key", b"plain{open", 1).expect("no tag");
        assert_eq!(
            crate::keys::key_hash(&plain),
            crate::keys::key_hash(b"plain{open")
        );
        assert!(lease_key("key", b"a}b", 1).is_err());
        assert!(!is_lease_key(&thread_key("t")));
    }

    #[test]
    fn a_queue_is_one_partition_ordered_by_priority_then_id() {
        let h = crate::keys::key_hash(&queue_route_key("jobs"));
        for k in [
            queue_key("jobs"),
            queue_task_key("jobs", 7),
            queue_order_key("jobs", 3, 7),
            queue_dead_key("jobs", 7),
            queue_idem_key("jobs", "k"),
        ] {
            assert_eq!(crate::keys::key_hash(&k), h);
        }
        let mut order = [
            queue_order_key("jobs", 0, 1),
            queue_order_key("jobs", 9, 5),
            queue_order_key("jobs", 9, 2),
            queue_order_key("jobs", 255, 300),
        ];
        order.sort();
        let seen: Vec<_> = order.iter().filter_map(|k| queue_order_of(k)).collect();
        assert_eq!(seen, vec![(255, 300), (9, 2), (9, 5), (0, 1)]);
        assert!(order
            .iter()
            .all(|k| k.starts_with(&queue_order_prefix("jobs"))));
        assert!(validate_queue("queue", "a}b").is_err());
        assert!(validate_queue("queue", "").is_err());
    }

    #[test]
    fn one_conversation_is_one_partition() {
        let c = conv("agents", "run/7");
        let h = crate::keys::key_hash(&conv_key(&c));
        assert_eq!(crate::keys::key_hash(&msg_key(&c, 9)), h);
        assert_eq!(crate::keys::key_hash(&idem_key(&c, "k")), h);
        assert_eq!(seq_of(&msg_key(&c, 9)), Some(9));
        assert_eq!(conv_path_of(&conv_key(&c)), Some(&b"agents/run/7"[..]));
        assert_eq!(conv_path_of(&msg_key(&c, 9)), None);
        assert!(matches!(owner_of_record(&conv_key(&c)), Some(Owner::Conversation(r)) if r == c));
    }

    #[test]
    fn one_thread_is_one_partition() {
        let t = ThreadRef {
            thread: "th".into(),
            ns: "".into(),
            namespace: String::new(),
        };
        let h = crate::keys::key_hash(&thread_key("th"));
        assert_eq!(crate::keys::key_hash(&ckpt_key(&t, "1")), h);
        assert_eq!(crate::keys::key_hash(&blob_key(&t, "ch", "v1")), h);
        assert_eq!(crate::keys::key_hash(&write_key(&t, "1", "task", 0)), h);
        assert_eq!(
            blob_of(&t, &blob_key(&t, "ch", "v1")),
            Some(("ch".into(), "v1".into()))
        );
        assert!(matches!(owner_of_record(&thread_key("th")), Some(Owner::Thread(n)) if n == "th"));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_conversation(Some(&conv("a", "b"))).is_ok());
        assert!(validate_conversation(Some(&conv("a/b", "c"))).is_err());
        assert!(validate_conversation(Some(&conv("a", "c}"))).is_err());
        assert!(validate_conversation(Some(&conv("", "c"))).is_err());
        assert!(validate_conversation(Some(&conv("a", "x\ny"))).is_err());
        assert!(validate_conversation(None).is_err());
        assert!(validate_conversation(Some(&conv("a", &"x".repeat(129)))).is_err());
    }

    #[test]
    fn run_ids_are_checked_before_any_call() {
        let ids: Vec<String> = (0..2_500).map(|i| format!("r{i}")).collect();
        let calls: Vec<usize> = run_id_calls(&ids).expect("ids").map(<[_]>::len).collect();
        assert_eq!(calls, vec![1_000, 1_000, 500]);
        assert!(validate_run_ids(&ids[..1_000]).is_ok());
        assert!(
            validate_run_ids(&ids[..1_001]).is_err(),
            "over one call's worth"
        );
        let mut bad = ids.clone();
        bad[2_400] = String::new();
        assert!(run_id_calls(&bad).is_err(), "a bad id in the last call");
        assert!(run_id_calls(&[]).is_err());
        assert!(validate_run_ids(&["x".repeat(129)]).is_err());
    }
}
