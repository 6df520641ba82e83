//! The client's side of `Kv.BatchCommands`: the `Get` and `Put` calls to one node,
//! and the agent calls of a step (`Append`, `Read`, `PutCheckpoint`, `PutWrites`,
//! `GetCheckpoint`), share one long-lived stream, as TiKV's client does with its
//! `BatchCommands`.
//!
//! A call hands its request to the stream's writer task and waits for its result.
//! The writer takes every call queued when it wakes, sends them as one message (each
//! with an id and its trace context), and a reader task hands each result to its
//! caller by id. So under load many calls share a message, an HTTP/2 frame and a
//! system call, and no call pays for an HTTP/2 stream of its own. A stream that
//! fails fails the calls it carries with its status (each then goes through the
//! client's usual retry rules, as a unary call's failure would) and is replaced by a
//! new one at the next call.

use crate::proto::kv_client::KvClient;
use crate::proto::{
    batch_command, batch_command_result, BatchCommand, BatchCommandsRequest, CallStatus,
};
use crate::trace::Channel;
use futures::channel::mpsc as fmpsc;
use futures::SinkExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// Calls one message carries at most.
const MAX_CALLS_PER_MESSAGE: usize = 256;

/// Bytes of calls one message carries at most (a message always carries at least
/// one call, and one call fits the gRPC message limit): calls with large values go
/// over several messages, never over the limit together.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Messages the writer may have queued for the transport.
const OUT_QUEUE: usize = 16;

type Reply = oneshot::Sender<Result<batch_command_result::Result, Status>>;

/// One call waiting for the writer.
struct Queued {
    cmd: batch_command::Cmd,
    traceparent: String,
    reply: Reply,
}

impl Queued {
    /// About the bytes the call takes in a message.
    fn size(&self) -> usize {
        self.cmd.encoded_len() + self.traceparent.len() + 16
    }
}

/// The batch stream to one node (made at the first call, remade after a failure).
pub(crate) struct Batcher {
    /// The node's channel, without a batcher of its own.
    channel: Channel,
    writer: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
}

/// The calls sent on a stream and not answered yet, or why the stream ended.
#[derive(Default)]
struct InFlight {
    calls: HashMap<u64, Reply>,
    ended: Option<Status>,
}

impl Batcher {
    /// A batcher that opens its streams on `channel`.
    pub(crate) fn new(channel: Channel) -> Self {
        Self {
            channel,
            writer: Mutex::new(None),
        }
    }

    /// Sends `cmd` on the stream and waits for its result; an error result comes back
    /// as the status its unary form would have ended with.
    pub(crate) async fn call(
        &self,
        cmd: batch_command::Cmd,
        traceparent: String,
    ) -> Result<batch_command_result::Result, Status> {
        let (reply, answer) = oneshot::channel();
        let mut queued = Queued {
            cmd,
            traceparent,
            reply,
        };
        // A writer that has ended (its stream failed) is replaced once.
        for _ in 0..2 {
            let writer = self.writer();
            match writer.send(queued) {
                Ok(()) => {
                    return match answer.await {
                        Ok(r) => r,
                        Err(_) => Err(Status::unavailable("the batch stream ended")),
                    }
                }
                Err(mpsc::error::SendError(q)) => {
                    queued = q;
                    let mut w = self.writer.lock();
                    if w.as_ref().is_some_and(|w| w.same_channel(&writer)) {
                        *w = None;
                    }
                }
            }
        }
        Err(Status::unavailable("cannot open a batch stream"))
    }

    fn writer(&self) -> mpsc::UnboundedSender<Queued> {
        let mut w = self.writer.lock();
        if let Some(tx) = w.as_ref() {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(self.channel.clone(), rx));
        *w = Some(tx.clone());
        tx
    }
}

/// One stream: its writer loop here, its reader in a task of its own.
async fn run(channel: Channel, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let (mut out, requests) = fmpsc::channel::<BatchCommandsRequest>(OUT_QUEUE);
    let in_flight = Arc::new(Mutex::new(InFlight::default()));
    let mut reader = tokio::spawn({
        let in_flight = in_flight.clone();
        async move {
            let mut client = KvClient::new(channel)
                .max_decoding_message_size(crate::proto::MAX_MESSAGE_SIZE)
                .max_encoding_message_size(crate::proto::MAX_MESSAGE_SIZE);
            let why = match client.batch_commands(requests).await {
                Err(s) => s,
                Ok(answers) => {
                    let mut answers = answers.into_inner();
                    loop {
                        match answers.message().await {
                            Ok(Some(m)) => {
                                let mut f = in_flight.lock();
                                for r in m.results {
                                    if let Some(reply) = f.calls.remove(&r.id) {
                                        let _ = reply.send(r.result.ok_or_else(|| {
                                            Status::internal("a batch result without a result")
                                        }));
                                    }
                                }
                            }
                            Ok(None) => {
                                break Status::unavailable("the node ended the batch stream")
                            }
                            Err(s) => break s,
                        }
                    }
                }
            };
            let mut f = in_flight.lock();
            for (_, reply) in f.calls.drain() {
                let _ = reply.send(Err(why.clone()));
            }
            f.ended = Some(why);
        }
    });
    let mut next_id = 0u64;
    // A call taken from the queue that did not fit the last message.
    let mut carry: Option<Queued> = None;
    loop {
        let first = match carry.take() {
            Some(q) => q,
            None => {
                let q = tokio::select! {
                    q = queue.recv() => q,
                    // The stream failed: end here, so the next call opens a new one.
                    _ = &mut reader => return,
                };
                // No more callers: closing our side ends the stream once its calls
                // answered.
                let Some(q) = q else { return };
                q
            }
        };
        let calls = take_message(first, &mut queue, &mut carry);
        let mut msg = BatchCommandsRequest {
            commands: Vec::with_capacity(calls.len()),
        };
        {
            let mut f = in_flight.lock();
            if let Some(why) = &f.ended {
                for q in calls {
                    let _ = q.reply.send(Err(why.clone()));
                }
                return;
            }
            for q in calls {
                next_id += 1;
                f.calls.insert(next_id, q.reply);
                msg.commands.push(BatchCommand {
                    id: next_id,
                    traceparent: q.traceparent,
                    cmd: Some(q.cmd),
                });
            }
        }
        if out.send(msg).await.is_err() {
            // The transport dropped the request stream: the reader ends with the
            // stream's status and fails what was sent.
            let _ = (&mut reader).await;
            return;
        }
    }
}

/// The calls of one message: `first`, then those queued, within the message limits;
/// a call that does not fit is left in `carry` for the next message.
fn take_message(
    first: Queued,
    queue: &mut mpsc::UnboundedReceiver<Queued>,
    carry: &mut Option<Queued>,
) -> Vec<Queued> {
    let mut bytes = first.size();
    let mut calls = vec![first];
    while calls.len() < MAX_CALLS_PER_MESSAGE {
        match queue.try_recv() {
            Ok(q) if bytes + q.size() > MAX_MESSAGE_BYTES => {
                *carry = Some(q);
                break;
            }
            Ok(q) => {
                bytes += q.size();
                calls.push(q);
            }
            Err(_) => break,
        }
    }
    calls
}

/// The status a call's error result carries.
pub(crate) fn status(s: CallStatus) -> Status {
    Status::with_details(tonic::Code::from_i32(s.code), s.message, s.details)
}

/// `async fn $name(ch, req)`: the call `$variant` on `ch`'s batch stream if it has
/// one, else `$service`'s unary `$name`.
macro_rules! batched {
    ($(#[$doc:meta])* $name:ident, $service:ident, $variant:ident, $req:ty, $resp:ty) => {
        $(#[$doc])*
        pub(crate) async fn $name(ch: Channel, req: $req) -> Result<$resp, Status> {
            match ch.batcher() {
                Some(b) => {
                    on_stream(b, batch_command::Cmd::$variant(req), |r| match r {
                        batch_command_result::Result::$variant(r) => Ok(r),
                        other => Err(unexpected(other)),
                    })
                    .await
                }
                None => Ok(crate::Client::$service(ch).$name(req).await?.into_inner()),
            }
        }
    };
}

batched!(
    /// `Kv.Get`.
    get, kv, Get, crate::proto::GetRequest, crate::proto::GetResponse
);
batched!(
    /// `Kv.Put`.
    put, kv, Put, crate::proto::PutRequest, crate::proto::PutResponse
);
batched!(
    /// `AgentContext.Append`.
    append, agent, Append, crate::proto::AppendRequest, crate::proto::AppendResponse
);
batched!(
    /// `AgentContext.Read`.
    read, agent, Read, crate::proto::ReadRequest, crate::proto::ReadResponse
);
batched!(
    /// `AgentContext.PutCheckpoint`.
    put_checkpoint,
    agent,
    PutCheckpoint,
    crate::proto::PutCheckpointRequest,
    crate::proto::PutCheckpointResponse
);
batched!(
    /// `AgentContext.PutWrites`.
    put_writes,
    agent,
    PutWrites,
    crate::proto::PutWritesRequest,
    crate::proto::PutWritesResponse
);
batched!(
    /// `AgentContext.GetCheckpoint`.
    get_checkpoint,
    agent,
    GetCheckpoint,
    crate::proto::GetCheckpointRequest,
    crate::proto::GetCheckpointResponse
);

/// Sends `cmd` on `b`'s stream; `answer` takes the call's own kind of result, and
/// makes any other the status it stands for.
async fn on_stream<T>(
    b: &Batcher,
    cmd: batch_command::Cmd,
    answer: fn(batch_command_result::Result) -> Result<T, Status>,
) -> Result<T, Status> {
    answer(b.call(cmd, traceparent()).await?)
}

fn traceparent() -> String {
    crate::trace::current_header()
        .to_str()
        .unwrap_or_default()
        .to_string()
}

/// An error result as its status; any other result is not the call's.
fn unexpected(r: batch_command_result::Result) -> Status {
    match r {
        batch_command_result::Result::Error(s) => status(s),
        _ => Status::internal("the node answered a batched call with another call's result"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{GetRequest, PutRequest};

    fn queued(cmd: batch_command::Cmd) -> Queued {
        Queued {
            cmd,
            traceparent: String::new(),
            reply: oneshot::channel().0,
        }
    }

    fn put(size: usize) -> Queued {
        queued(batch_command::Cmd::Put(PutRequest {
            key: "k".into(),
            value: vec![0; size].into(),
            ..Default::default()
        }))
    }

    /// Drains `queue` into messages as the writer does; their sizes.
    fn messages(mut queue: mpsc::UnboundedReceiver<Queued>) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut carry = None;
        while let Some(first) = carry.take().or_else(|| queue.try_recv().ok()) {
            let calls = take_message(first, &mut queue, &mut carry);
            out.push((calls.len(), calls.iter().map(Queued::size).sum()));
        }
        out
    }

    #[test]
    fn messages_keep_within_their_call_and_byte_limits_and_lose_no_call() {
        let (tx, rx) = mpsc::unbounded_channel();
        // 24 large puts, each over the byte limit alone: one per message.
        for _ in 0..24 {
            tx.send(put(4608 << 10)).ok();
        }
        // 600 small gets: 256 per message at most.
        for _ in 0..600 {
            tx.send(queued(batch_command::Cmd::Get(GetRequest::default())))
                .ok();
        }
        // 10 puts of 1.5 MiB: two fit a message.
        for _ in 0..10 {
            tx.send(put(1536 << 10)).ok();
        }
        drop(tx);
        let m = messages(rx);
        assert_eq!(
            m.iter().map(|(n, _)| n).sum::<usize>(),
            634,
            "every call sent once"
        );
        for (n, bytes) in &m {
            assert!(*n <= MAX_CALLS_PER_MESSAGE, "{n} calls in a message");
            assert!(
                *n == 1 || *bytes <= MAX_MESSAGE_BYTES,
                "{n} calls of {bytes} bytes"
            );
        }
        assert!(m[..24].iter().all(|(n, _)| *n == 1), "{m:?}");
        assert_eq!(m.last().map(|(n, _)| *n), Some(2), "{m:?}");
    }
}
