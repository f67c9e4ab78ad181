//! The NATS JetStream log: one stream per log, a durable pull consumer per consumer name.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy};
use bytes::Bytes;
use futures_core::Stream as _;

use crate::error::StreamError;
use crate::{Delivery, DEFAULT_MAX_PAYLOAD_BYTES};

/// How many messages the pull subscription asks the server for ahead of `next_batch`.
const PREFETCH: usize = 256;
/// Messages delivered but not acked before the server pauses delivery to the consumer.
const MAX_ACK_PENDING: i64 = 20_000;

/// A JetStream-backed log (see the crate docs). Cheap to clone.
#[derive(Clone)]
pub struct JetStreamLog {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    context: jetstream::Context,
    stream: jetstream::stream::Stream<()>,
    name: String,
    subject: String,
    max_payload: usize,
    /// Held while one call's messages are handed to the connection, so one `append` reaches
    /// the server as a contiguous run (consecutive offsets, unless another process publishes).
    publish: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("stream", &self.inner.name)
            .field("subject", &self.inner.subject)
            .finish_non_exhaustive()
    }
}

impl JetStreamLog {
    pub(crate) async fn connect(url: &str, stream: &str) -> Result<JetStreamLog, StreamError> {
        crate::validate_name(stream)?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| StreamError::jetstream("connect", e))?;
        let context = jetstream::new(client.clone());
        let subject = format!("signalbox.{stream}");
        let info = context
            .get_or_create_stream(jetstream::stream::Config {
                name: stream.to_owned(),
                subjects: vec![subject.clone()],
                storage: jetstream::stream::StorageType::File,
                retention: jetstream::stream::RetentionPolicy::Limits,
                ..Default::default()
            })
            .await
            .map_err(|e| StreamError::jetstream("create stream", e))?
            .cached_info()
            .clone();
        if !info.config.subjects.contains(&subject) {
            return Err(StreamError::StreamMismatch {
                stream: stream.to_owned(),
                reason: format!(
                    "it exists with subjects {:?}, not {subject:?}",
                    info.config.subjects
                ),
            });
        }
        let handle = context
            .get_stream_no_info(stream)
            .await
            .map_err(|e| StreamError::jetstream("open stream", e))?;
        // The server refuses messages over its max_payload; refusing them here gives the same
        // error as the file log, before anything is published.
        let max_payload = DEFAULT_MAX_PAYLOAD_BYTES.min(client.server_info().max_payload);
        Ok(JetStreamLog {
            inner: Arc::new(Inner {
                client,
                context,
                stream: handle,
                name: stream.to_owned(),
                subject,
                max_payload,
                publish: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub(crate) async fn append(&self, payloads: &[Bytes]) -> Result<u64, StreamError> {
        let max = self.inner.max_payload;
        if let Some((index, p)) = payloads.iter().enumerate().find(|(_, p)| p.len() > max) {
            return Err(StreamError::PayloadTooLarge {
                index,
                len: p.len(),
                max,
            });
        }
        if payloads.is_empty() {
            return self.last_offset().await;
        }
        let mut acks = Vec::with_capacity(payloads.len());
        {
            let _run = self.inner.publish.lock().await;
            for payload in payloads {
                let ack = self
                    .inner
                    .context
                    .publish(self.inner.subject.clone(), payload.clone())
                    .await
                    .map_err(|e| StreamError::jetstream("publish", e))?;
                acks.push(ack);
            }
        }
        // All messages are on the wire; now collect the PubAcks (pipelined, not one round trip
        // per message).
        let mut last = 0;
        for ack in acks {
            let ack = ack
                .await
                .map_err(|e| StreamError::jetstream("publish ack", e))?;
            last = last.max(ack.sequence);
        }
        Ok(last)
    }

    pub(crate) async fn last_offset(&self) -> Result<u64, StreamError> {
        let info = self
            .inner
            .stream
            .get_info()
            .await
            .map_err(|e| StreamError::jetstream("stream info", e))?;
        Ok(info.state.last_sequence)
    }

    pub(crate) async fn consumer(&self, name: &str) -> Result<JetStreamConsumer, StreamError> {
        crate::validate_name(name)?;
        let stream = self
            .inner
            .context
            .get_stream(&self.inner.name)
            .await
            .map_err(|e| StreamError::jetstream("open stream", e))?;
        let config = pull::Config {
            durable_name: Some(name.to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::All,
            filter_subject: self.inner.subject.clone(),
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(name, config.clone())
            .await
            .map_err(|e| StreamError::jetstream("create consumer", e))?;
        let info = consumer.cached_info().clone();
        if info.num_ack_pending > 0 {
            // A previous session was handed messages it never acked. The server would only
            // redeliver them after ack_wait, behind newer messages, and a cumulative ack of a
            // newer one would then drop them unprocessed. Recreating the durable consumer right
            // after its ack floor puts them first again.
            let start = ack_floor(&info) + 1;
            tracing::info!(
                consumer = name,
                start,
                pending = info.num_ack_pending,
                "jetstream: rewinding consumer to its ack floor"
            );
            stream
                .delete_consumer(name)
                .await
                .map_err(|e| StreamError::jetstream("rewind consumer", e))?;
            consumer = stream
                .create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ..config
                })
                .await
                .map_err(|e| StreamError::jetstream("rewind consumer", e))?;
        }
        let acked = ack_floor(consumer.cached_info());
        let messages = consumer
            .stream()
            .max_messages_per_batch(PREFETCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| StreamError::jetstream("subscribe", e))?;
        Ok(JetStreamConsumer {
            log: self.clone(),
            name: name.to_owned(),
            messages,
            acked,
            delivered: acked,
            unacked: VecDeque::new(),
            deferred_error: None,
        })
    }
}

pub(crate) struct JetStreamConsumer {
    log: JetStreamLog,
    name: String,
    messages: pull::Stream,
    acked: u64,
    /// Highest stream sequence handed out.
    delivered: u64,
    /// Reply (ack) subjects of handed-out, unacked messages, by stream sequence.
    unacked: VecDeque<(u64, async_nats::Subject)>,
    /// An error met after some messages of a batch; returned by the next call.
    deferred_error: Option<StreamError>,
}

impl std::fmt::Debug for JetStreamConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamConsumer")
            .field("name", &self.name)
            .field("acked", &self.acked)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl JetStreamConsumer {
    pub(crate) async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, StreamError> {
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        let max = max.max(1);
        let JetStreamConsumer {
            messages,
            delivered,
            unacked,
            deferred_error,
            ..
        } = self;
        // Cancel safety: messages wait in the subscription until polled, and every poll that
        // takes one returns Ready in the same call, so nothing is held across a Pending.
        poll_fn(|cx| {
            let mut batch = Vec::new();
            loop {
                match Pin::new(&mut *messages).poll_next(cx) {
                    Poll::Ready(Some(Ok(message))) => {
                        let seq = match message.info() {
                            Ok(info) => info.stream_sequence,
                            Err(e) => {
                                let err = StreamError::JetStream {
                                    op: "message metadata",
                                    source: e,
                                };
                                return finish(batch, err, deferred_error);
                            }
                        };
                        // A redelivery (ack_wait expired while the caller was busy) of
                        // something already handed out: the caller's cumulative ack covers it.
                        if seq <= *delivered {
                            continue;
                        }
                        let Some(reply) = message.reply.clone() else {
                            let err = StreamError::Internal(
                                "jetstream message without an ack subject".to_owned(),
                            );
                            return finish(batch, err, deferred_error);
                        };
                        *delivered = seq;
                        unacked.push_back((seq, reply));
                        batch.push(Delivery {
                            offset: seq,
                            payload: message.payload.clone(),
                        });
                        if batch.len() >= max {
                            return Poll::Ready(Ok(batch));
                        }
                    }
                    Poll::Ready(Some(Err(e)))
                        if e.kind() == pull::MessagesErrorKind::MissingHeartbeat =>
                    {
                        // Transient (also reported when the caller simply polled late); the
                        // subscription re-issues its pull request by itself.
                        tracing::debug!("jetstream: missed idle heartbeat");
                        if !batch.is_empty() {
                            return Poll::Ready(Ok(batch));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return finish(batch, StreamError::jetstream("fetch", e), deferred_error)
                    }
                    Poll::Ready(None) => return finish(batch, StreamError::Closed, deferred_error),
                    Poll::Pending if batch.is_empty() => return Poll::Pending,
                    Poll::Pending => return Poll::Ready(Ok(batch)),
                }
            }
        })
        .await
    }

    pub(crate) async fn ack(&mut self, offset: u64) -> Result<(), StreamError> {
        if offset <= self.acked {
            return Ok(());
        }
        if offset > self.delivered {
            return Err(StreamError::AckBeyondDelivered {
                offset,
                delivered: self.delivered,
            });
        }
        // AckPolicy::All: acking the newest handed-out message at or below `offset` acks
        // everything before it too.
        let n = self.unacked.partition_point(|(seq, _)| *seq <= offset);
        let Some((seq, reply)) = n.checked_sub(1).and_then(|i| self.unacked.get(i)).cloned() else {
            return Ok(());
        };
        // A request, not a publish: the server answers once the ack is stored, which is what
        // makes the ack durable when this returns.
        self.log
            .inner
            .client
            .request(reply, Bytes::from_static(b"+ACK"))
            .await
            .map_err(|e| StreamError::jetstream("ack", e))?;
        self.unacked.drain(..n);
        self.acked = seq;
        Ok(())
    }

    pub(crate) async fn lag(&self) -> Result<u64, StreamError> {
        Ok(self.log.last_offset().await?.saturating_sub(self.acked))
    }
}

/// The stream sequence everything up to which is acked. A consumer created to start at
/// sequence S reports an ack floor of 0 until its first ack (seen on nats-server 2.9), although
/// nothing before S will ever be delivered to it.
fn ack_floor(info: &jetstream::consumer::Info) -> u64 {
    let start_floor = match info.config.deliver_policy {
        DeliverPolicy::ByStartSequence { start_sequence } => start_sequence.saturating_sub(1),
        _ => 0,
    };
    info.ack_floor.stream_sequence.max(start_floor)
}

/// Returns the messages gathered so far and keeps `err` for the next call, or returns `err`
/// now if there are none.
fn finish(
    batch: Vec<Delivery>,
    err: StreamError,
    deferred: &mut Option<StreamError>,
) -> Poll<Result<Vec<Delivery>, StreamError>> {
    if batch.is_empty() {
        Poll::Ready(Err(err))
    } else {
        *deferred = Some(err);
        Poll::Ready(Ok(batch))
    }
}
