//! `Kv.BatchCommands`: many `Get` and `Put` calls, and the agent calls of a step
//! (`AgentContext`'s `Append`, `Read`, `PutCheckpoint`, `PutWrites`, `GetCheckpoint`),
//! on one long-lived stream, so a busy
//! client pays HTTP/2's per-call work (a stream, its headers and trailers, the tower
//! layers) once per stream instead of once per call, and its calls and their results
//! travel a message (and a `writev`) at a time.
//!
//! Each call runs as its own task through the code of its unary form (the `Kv`
//! service hands that in), with the stream's principal refreshed against the node's auth state
//! as the call arrives (a revoked token stops working on an open stream too); it is
//! counted and traced as its unary form would be. Results go back coalesced: one
//! message carries every result ready when the stream's writer runs. A stream runs
//! at most `MAX_IN_FLIGHT` calls at once; past that it stops reading its requests,
//! so a client that sends faster than the node serves is held back by HTTP/2 flow
//! control.

use crate::auth::Principal;
use crate::error::Error;
use crate::node::ctx::NodeCtx;
use crate::proto::{
    batch_command, batch_command_result, BatchCommand, BatchCommandResult, BatchCommandsRequest,
    BatchCommandsResponse, CallStatus,
};
use crate::server::path::RequestPath;
use crate::server::watch::{next_inbound, RpcStream};
use ctxstore_api::trace::TraceParent;
use prost::Message as _;
use std::future::Future;
use std::time::Instant;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::Instrument;

/// Calls of one stream that may run (or wait to be sent back) at once.
const MAX_IN_FLIGHT: usize = 4_096;

/// Results one answer message carries at most.
const MAX_RESULTS_PER_MESSAGE: usize = 1_024;

/// Bytes of results one answer message carries at most (it always carries at least
/// one result, and one result fits the gRPC message limit): gets of large values go
/// back over several messages, never over the limit together.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The service, method and path of a batched call's unary form, for its metrics and
/// trace span.
fn names(cmd: &Option<batch_command::Cmd>) -> (&'static str, &'static str, &'static str) {
    use batch_command::Cmd;
    // The path is `/<service>/<method>`, built at compile time.
    macro_rules! unary {
        ($service:literal, $method:literal) => {
            (
                concat!("ctxstore.v1.", $service),
                $method,
                concat!("/ctxstore.v1.", $service, "/", $method),
            )
        };
    }
    match cmd {
        Some(Cmd::Get(_)) => unary!("Kv", "Get"),
        Some(Cmd::Put(_)) => unary!("Kv", "Put"),
        Some(Cmd::Append(_)) => unary!("AgentContext", "Append"),
        Some(Cmd::Read(_)) => unary!("AgentContext", "Read"),
        Some(Cmd::PutCheckpoint(_)) => unary!("AgentContext", "PutCheckpoint"),
        Some(Cmd::PutWrites(_)) => unary!("AgentContext", "PutWrites"),
        Some(Cmd::GetCheckpoint(_)) => unary!("AgentContext", "GetCheckpoint"),
        None => unary!("Kv", "unknown"),
    }
}

/// Serves one stream: reads its calls, runs each with `call` (by the code of its
/// unary form), and answers with their results.
pub(crate) fn serve<F, Fut>(
    path: RequestPath,
    who: Option<Principal>,
    mut inbound: Streaming<BatchCommandsRequest>,
    call: F,
) -> RpcStream<BatchCommandsResponse>
where
    F: Fn(RequestPath, Option<Principal>, batch_command::Cmd) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<batch_command_result::Result, Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<BatchCommandResult>(MAX_IN_FLIGHT);
    let ctx = path.ctx().clone();
    let tracker = ctx.tracker.clone();
    tracker.spawn(async move {
        // Until the client closes its side (or breaks the stream): the calls running
        // then still answer, and the answers end.
        while let Some(msg) = next_inbound(&ctx, &mut inbound, "batch").await {
            for cmd in msg.commands {
                // A slot for the result before the call runs: the back pressure.
                let Ok(slot) = tx.clone().reserve_owned().await else {
                    return;
                };
                let (path, who, call) = (path.clone(), who.clone(), call.clone());
                ctx.tracker.spawn(async move {
                    slot.send(run(path, &who, cmd, call).await);
                });
            }
        }
    });
    Box::pin(answers(rx))
}

/// The answer messages: each carries every result that is ready, within
/// `MAX_RESULTS_PER_MESSAGE` and `MAX_MESSAGE_BYTES`.
fn answers(
    rx: mpsc::Receiver<BatchCommandResult>,
) -> impl futures::Stream<Item = std::result::Result<BatchCommandsResponse, Status>> {
    futures::stream::unfold((rx, None), |(mut rx, carry)| async move {
        let first: BatchCommandResult = match carry {
            Some(r) => r,
            None => rx.recv().await?,
        };
        let mut bytes = first.encoded_len();
        let mut results = vec![first];
        let mut carry = None;
        while results.len() < MAX_RESULTS_PER_MESSAGE {
            match rx.try_recv() {
                Ok(r) if bytes + r.encoded_len() > MAX_MESSAGE_BYTES => {
                    carry = Some(r);
                    break;
                }
                Ok(r) => {
                    bytes += r.encoded_len();
                    results.push(r);
                }
                Err(_) => break,
            }
        }
        Some((Ok(BatchCommandsResponse { results }), (rx, carry)))
    })
}

/// Runs one call of a stream.
async fn run<F, Fut>(
    path: RequestPath,
    who: &Option<Principal>,
    cmd: BatchCommand,
    call: F,
) -> BatchCommandResult
where
    F: Fn(RequestPath, Option<Principal>, batch_command::Cmd) -> Fut,
    Fut: Future<Output = Result<batch_command_result::Result, Status>>,
{
    let BatchCommand {
        id,
        traceparent,
        cmd,
    } = cmd;
    let started = Instant::now();
    let (service, method, path_name) = names(&cmd);
    let span = super::grpc_trace::span_for(path_name, TraceParent::parse(traceparent.as_bytes()));
    let ctx = path.ctx().clone();
    let result = async {
        let who = caller(&ctx, who)?;
        match cmd {
            Some(cmd) => call(path, who, cmd).await,
            None => Err(Error::invalid(
                "cmd",
                "a batched call names none of the calls a stream carries (get, put, append, \
                 read, put_checkpoint, put_writes, get_checkpoint)",
            )
            .into()),
        }
    }
    .instrument(span.clone())
    .await;
    let result = match result {
        Ok(r) => r,
        Err(s) => batch_command_result::Result::Error(CallStatus {
            code: s.code() as i32,
            message: s.message().to_string(),
            details: s.details().to_vec().into(),
        }),
    };
    let code = match &result {
        batch_command_result::Result::Error(s) => tonic::Code::from_i32(s.code),
        _ => tonic::Code::Ok,
    };
    super::grpc_trace::record_status(&span, code as i32);
    super::grpc_metrics::record(&ctx.metrics, service, method, code, started);
    BatchCommandResult {
        id,
        result: Some(result),
    }
}

/// Who makes a call of a stream opened by `who`, as the node's auth state stands now:
/// the stream's principal with its current roles, or an error if its credentials no
/// longer hold (or auth was turned on after a stream opened without any).
fn caller(ctx: &NodeCtx, who: &Option<Principal>) -> crate::error::Result<Option<Principal>> {
    let state = ctx.auth.current();
    if !state.enabled() {
        return Ok(None);
    }
    match who {
        Some(p) => state.refresh(p).map(Some).ok_or_else(|| {
            Error::Unauthenticated(
                "the stream's credentials are no longer valid; open a new stream".into(),
            )
        }),
        None => Err(Error::Unauthenticated(
            "auth was turned on after this stream opened; open a new one with credentials".into(),
        )),
    }
}
