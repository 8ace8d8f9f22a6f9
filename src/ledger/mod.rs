//! The ledger stream (DESIGN §7): gRPC `leadrouter.v1.LedgerStream/Subscribe` over the
//! journal, plus gRPC health and reflection.
//!
//! Rationale for pulling per subscriber: each subscriber has its own task that reads the
//! journal from its last sequence and feeds a small bounded channel. A slow subscriber only
//! slows its own task (it reads on when it has room); it never holds up appends or other
//! subscribers, and nothing is dropped, because there is no shared broadcast buffer to
//! overflow: a lagging reader simply reads older events from the log.

mod convert;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::store::journal::consumers::{self, Consumers};
use crate::store::{EventLog, LogError};
use crate::telemetry;

pub use convert::to_proto;

/// The generated protobuf types, client and server.
pub mod proto {
    tonic::include_proto!("leadrouter.v1");
}

/// For gRPC reflection (`grpcurl -plaintext 127.0.0.1:50051 list`).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ledger_descriptor.bin"));

/// Events waiting in one subscriber's channel: enough to keep the network busy, small
/// enough that a thousand idle subscribers cost little.
const SUBSCRIBER_BUFFER: usize = 1_024;
/// Events read from the log at a time.
const READ_BATCH: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("gRPC listener: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

pub struct LedgerService {
    log: Arc<dyn EventLog>,
    /// Registered consumers' positions (embedded journals; None on Redis, where retention
    /// does not apply).
    consumers: Option<Arc<Consumers>>,
    clock: Arc<dyn Clock>,
    /// Turns true on shutdown: every feed ends its stream, so connections can close and the
    /// server can stop (a tailing subscriber would otherwise hold it open forever).
    stopping: watch::Receiver<bool>,
}

impl LedgerService {
    pub fn new(
        log: Arc<dyn EventLog>,
        consumers: Option<Arc<Consumers>>,
        clock: Arc<dyn Clock>,
        stopping: watch::Receiver<bool>,
    ) -> LedgerService {
        LedgerService { log, consumers, clock, stopping }
    }

    /// Notes a consumer's position (a blocking file write, off the runtime).
    async fn register(&self, consumer: String, sequence: u64) -> Result<(), Status> {
        if !consumers::valid_name(&consumer) {
            return Err(Status::invalid_argument("consumer names are 1-64 of A-Z a-z 0-9 . _ -"));
        }
        if sequence > self.log.last_sequence() {
            return Err(Status::invalid_argument(format!(
                "sequence {sequence} is past the newest event ({})",
                self.log.last_sequence()
            )));
        }
        let Some(consumers) = self.consumers.clone() else { return Ok(()) };
        let at = self.clock.now();
        tokio::task::spawn_blocking(move || consumers.register(&consumer, sequence, at))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(e.to_string()))
    }
}

#[tonic::async_trait]
impl proto::ledger_stream_server::LedgerStream for LedgerService {
    type SubscribeStream = ReceiverStream<Result<proto::LedgerEvent, Status>>;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let after = request.after_sequence;
        if after + 1 < self.log.first_sequence() {
            return Err(removed(self.log.first_sequence()));
        }
        if !request.consumer.is_empty() {
            // A subscriber that asks to start past the newest event (it read further on a
            // node that lost its tail, or it starts early) has read at most what there is.
            let read = after.min(self.log.last_sequence());
            self.register(request.consumer, read).await?;
        }
        let (events, stream) = mpsc::channel(SUBSCRIBER_BUFFER);
        tokio::spawn(feed(Arc::clone(&self.log), after, events, self.stopping.clone()));
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn acknowledge(
        &self,
        request: Request<proto::AcknowledgeRequest>,
    ) -> Result<Response<proto::AcknowledgeReply>, Status> {
        let request = request.into_inner();
        self.register(request.consumer, request.sequence).await?;
        Ok(Response::new(proto::AcknowledgeReply { first_retained_sequence: self.log.first_sequence() }))
    }
}

/// What a subscriber hears when it asks for sequences retention removed: never a silent
/// gap (it must restore from a backup or start over with a consumer that has them).
fn removed(first_retained: u64) -> Status {
    Status::out_of_range(format!(
        "sequences before {first_retained} were removed by retention (--retain-days); subscribe after {}",
        first_retained - 1
    ))
}

/// Counts a subscriber for as long as its feed runs, however it ends.
struct Subscriber;

impl Subscriber {
    fn join() -> Subscriber {
        metrics::gauge!(telemetry::LEDGER_SUBSCRIBERS).increment(1.0);
        Subscriber
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::LEDGER_SUBSCRIBERS).decrement(1.0);
    }
}

/// Replays from `after`, then tails: gap-free, in order, each event once; ends when the
/// subscriber leaves or the server stops (the subscriber reconnects with its last sequence).
async fn feed(
    log: Arc<dyn EventLog>,
    mut after: u64,
    events: mpsc::Sender<Result<proto::LedgerEvent, Status>>,
    mut stopping: watch::Receiver<bool>,
) {
    let _subscriber = Subscriber::join();
    // Watch first, read second: an append between the two is seen either by the read or
    // as a change of the watch.
    let mut appended = log.watch();
    loop {
        if *stopping.borrow() {
            return;
        }
        let batch = match log.read_after(after, READ_BATCH) {
            Ok(batch) => batch,
            Err(LogError::Removed { first_retained }) => {
                let _ = events.send(Err(removed(first_retained))).await;
                return;
            }
            Err(error) => {
                let _ = events.send(Err(Status::unavailable(error.to_string()))).await;
                return;
            }
        };
        if batch.is_empty() {
            if *appended.borrow_and_update() > after {
                continue;
            }
            tokio::select! {
                changed = appended.changed() => if changed.is_err() { return },
                _ = events.closed() => return,
                _ = stopping.changed() => return,
            }
            continue;
        }
        for event in batch {
            after = event.sequence;
            tokio::select! {
                sent = events.send(Ok(to_proto(&event))) => if sent.is_err() { return }, // the subscriber left
                _ = stopping.changed() => return,
            }
        }
    }
}

/// Serves the ledger stream, health and reflection on `listener` until `stopping` turns
/// true; open streams end then, so the server stops without waiting for subscribers.
pub async fn serve(
    listener: TcpListener,
    service: LedgerService,
    stopping: watch::Receiver<bool>,
) -> Result<(), LedgerError> {
    let mut stopped = stopping.clone();
    let shutdown = async move {
        while !*stopped.borrow_and_update() {
            if stopped.changed().await.is_err() {
                break;
            }
        }
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<proto::ledger_stream_server::LedgerStreamServer<LedgerService>>().await;
    // Both reflection versions (older grpcurl and grpcio speak v1alpha), listing health too.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(proto::ledger_stream_server::LedgerStreamServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
