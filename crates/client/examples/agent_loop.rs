//! An agent-style loop against a running cluster (`scripts/dev.sh` or `ctxd dev`):
//! several simulated agents, two per conversation, each step reading the model record
//! (a stale read from any replica), reading a token-budgeted context, appending its
//! messages under `expected_last_seq` (a concurrent step by the other agent makes it
//! re-read and retry), checkpointing its state, and now and then compacting old
//! messages into a summary and pruning old checkpoints.
//!
//! ```sh
//! cargo run --example agent_loop -- [ENDPOINTS] [AGENTS] [STEPS]
//! # defaults: 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 4 25
//! ```

use ctxstore_client::proto::{
    prune_checkpoints_request::Keep, read_request::Select, AppendRequest, ChannelBlob, ChatMessage,
    Checkpoint, CompactRequest, ConversationRef, Model, PruneCheckpointsRequest,
    PutCheckpointRequest, ReadRequest, ThreadRef, TokenBudget,
};
use ctxstore_client::{Client, Error};
use std::time::{Duration, Instant};

/// Tokens of context each step may read.
const BUDGET: u64 = 1_500;

fn message(role: &str, content: String, tool_call: Option<&str>) -> ChatMessage {
    let mut m = ChatMessage {
        role: role.into(),
        // A stand-in for a tokenizer: one token per 4 bytes.
        token_count: content.len() as u64 / 4 + 1,
        content,
        ..Default::default()
    };
    if let Some(id) = tool_call {
        m.metadata.insert("tool_call_id".into(), id.into());
    }
    m
}

#[derive(Default, Debug)]
struct Stats {
    steps: u64,
    messages: u64,
    conflicts: u64,
    compactions: u64,
    step_time: Duration,
}

async fn run_agent(client: Client, run: u64, agent: usize, steps: usize) -> Result<Stats, Error> {
    let conv = ConversationRef {
        namespace: format!("demo-{run}"),
        id: format!("chat-{}", agent / 2),
    };
    let thread = ThreadRef {
        thread: format!("demo-{run}-agent-{agent}"),
        ns: String::new(),
        namespace: String::new(),
    };
    let mut stats = Stats::default();
    let mut parent = String::new();
    for step in 0..steps {
        let started = Instant::now();
        let model = client.get_model("demo-model", false).await?;
        let window = model.map_or(BUDGET, |m| m.context_window.min(BUDGET));
        // Read, think, append; if the other agent appended meanwhile, read again.
        loop {
            let ctx = client
                .read(ReadRequest {
                    conversation: Some(conv.clone()),
                    select: Some(Select::TokenBudget(TokenBudget {
                        max_tokens: window,
                        include_pinned: true,
                    })),
                    ..Default::default()
                })
                .await?;
            let last_seq = ctx.info.as_ref().map_or(0, |i| i.last_seq);
            let mut msgs = Vec::new();
            if last_seq == 0 {
                msgs.push(message(
                    "system",
                    "You are a careful assistant.".into(),
                    None,
                ));
            }
            msgs.push(message(
                "user",
                format!(
                    "agent {agent} step {step}: context has {} messages / {} tokens",
                    ctx.messages.len(),
                    ctx.total_tokens
                ),
                None,
            ));
            if step % 3 == 2 {
                let id = format!("call-{agent}-{step}");
                msgs.push(message(
                    "assistant",
                    format!("calling search for step {step}"),
                    Some(&id),
                ));
                msgs.push(message("tool", "search results: ".repeat(8), Some(&id)));
            }
            msgs.push(message(
                "assistant",
                format!("answer for step {step} ").repeat(4),
                None,
            ));
            let n = msgs.len() as u64;
            let r = client
                .append(AppendRequest {
                    conversation: Some(conv.clone()),
                    messages: msgs,
                    expected_last_seq: Some(last_seq),
                    idempotency_key: format!("{}-{step}", thread.thread),
                    ..Default::default()
                })
                .await;
            match r {
                Ok(_) => {
                    stats.messages += n;
                    break;
                }
                Err(Error::SequenceMismatch { .. }) => stats.conflicts += 1,
                Err(e) => return Err(e),
            }
        }
        let id = format!("{step:06}");
        client
            .put_checkpoint(PutCheckpointRequest {
                thread: Some(thread.clone()),
                checkpoint: Some(Checkpoint {
                    checkpoint_id: id.clone(),
                    parent_id: parent.clone(),
                    checkpoint: format!("{{\"step\":{step}}}").into_bytes().into(),
                    metadata: [("step".to_string(), step.to_string())].into(),
                    channel_versions: [("scratchpad".to_string(), step.to_string())].into(),
                    created_at_ms: 0,
                    metadata_json: format!("{{\"step\":{step}}}"),
                }),
                blobs: vec![ChannelBlob {
                    channel: "scratchpad".into(),
                    version: step.to_string(),
                    value: format!("notes after step {step}").into_bytes().into(),
                }],
                idle_ttl_ms: Some(3_600_000),
                ..Default::default()
            })
            .await?;
        parent = id;
        if step % 10 == 9 && agent.is_multiple_of(2) {
            compact(&client, &conv, &mut stats).await?;
            client
                .prune_checkpoints(PruneCheckpointsRequest {
                    thread: Some(thread.clone()),
                    keep: Some(Keep::KeepLatest(3)),
                    ..Default::default()
                })
                .await?;
        }
        stats.steps += 1;
        stats.step_time += started.elapsed();
    }
    Ok(stats)
}

/// Replaces all but the newest 8 messages with a summary (the system message at
/// seq 1 stays).
async fn compact(client: &Client, conv: &ConversationRef, stats: &mut Stats) -> Result<(), Error> {
    let Some(info) = client.conversation(conv.clone()).await? else {
        return Ok(());
    };
    let to = info.last_seq.saturating_sub(8);
    let from = info.first_seq.max(2);
    if to <= from {
        return Ok(());
    }
    let r = client
        .compact(CompactRequest {
            conversation: Some(conv.clone()),
            from_seq: from,
            to_seq: to,
            summary: Some(message(
                "assistant",
                format!("summary of messages {from}..{to}"),
                None,
            )),
            expected_last_seq: Some(info.last_seq),
            ..Default::default()
        })
        .await;
    match r {
        Ok(_) => stats.compactions += 1,
        // The other agent appended meanwhile, or compacted first: try next time.
        Err(Error::SequenceMismatch { .. } | Error::InvalidArgument { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoints: Vec<String> = args
        .first()
        .map_or(
            "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
            String::as_str,
        )
        .split(',')
        .map(String::from)
        .collect();
    let agents: usize = args.get(1).map_or(Ok(4), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(25), |s| s.parse())?;
    let client = Client::connect(&endpoints).await?;
    let run = ctxstore_client::util::now_ms();
    client
        .put_model(
            Model {
                name: "demo-model".into(),
                provider: "local".into(),
                context_window: 8_192,
                tokenizer: "bytes/4".into(),
                input_price_per_mtok: 0.5,
                output_price_per_mtok: 1.5,
                endpoint: "http://127.0.0.1:8000/v1".into(),
                ..Default::default()
            },
            None,
        )
        .await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..agents)
        .map(|a| tokio::spawn(run_agent(client.clone(), run, a, steps)))
        .collect();
    let mut total = Stats::default();
    for t in tasks {
        let s = t.await??;
        total.steps += s.steps;
        total.messages += s.messages;
        total.conflicts += s.conflicts;
        total.compactions += s.compactions;
        total.step_time += s.step_time;
    }
    let elapsed = started.elapsed();
    println!(
        "{agents} agents, {} steps in {:.2} s ({:.0} steps/s); {} messages appended, {} append conflicts retried, {} compactions; mean step {:.1} ms",
        total.steps,
        elapsed.as_secs_f64(),
        total.steps as f64 / elapsed.as_secs_f64(),
        total.messages,
        total.conflicts,
        total.compactions,
        total.step_time.as_secs_f64() * 1000.0 / total.steps.max(1) as f64
    );
    for c in 0..agents.div_ceil(2) {
        let conv = ConversationRef {
            namespace: format!("demo-{run}"),
            id: format!("chat-{c}"),
        };
        if let Some(info) = client.conversation(conv).await? {
            println!(
                "  chat-{c}: last seq {}, {} messages stored, {} tokens",
                info.last_seq, info.message_count, info.token_total
            );
        }
    }
    Ok(())
}
