//! Circuits across the fleet, one hop over the mesh.
//!
//! The node a CONNECT arrives on (the *source node*) looks the destination up in the
//! directory and, if another node holds its reservation, opens a mesh stream to it and
//! sends a [`MeshRequest`] (source and destination peer ids). The other node (the
//! *destination node*) acknowledges with one byte as soon as it has read the request,
//! hands it to its circuit server, which answers a HOP `STATUS` on the mesh stream
//! exactly as it answers a local CONNECT (STOP to the destination, then
//! `OK` or why not). The source node passes that status on to the client and, on
//! `OK`, splices the client's HOP stream with the mesh stream.
//!
//! - **Within 2 s or a status.** Reaching the other node (dial, mesh handshake,
//!   request, acknowledgement) must finish within [`REACH_TIMEOUT`]; a dead node or a
//!   broken link is answered `CONNECTION_FAILED` then. A directory Redis that does
//!   not answer fails the lookup within [`super::directory::LOOKUP_TIMEOUT`].
//! - **One hop.** What arrives over the mesh is only ever served locally: a
//!   destination not reserved on that node is `NO_RESERVATION`, never forwarded again.
//! - **Both nodes count.** Each node applies its own circuit caps, rates, bandwidth
//!   caps and byte counts to its half, and reports the circuit as crossing the fleet.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use tokio::sync::mpsc;

use super::directory::Directory;
use super::mesh::Mesh;
use crate::circuit::handler::{self, CircuitId, STREAM_TIMEOUT};
use crate::circuit::proto::{HopMessage, Limit, Status};
use crate::circuit::splice::{self, CircuitLimits, End, SpliceServices};
use crate::circuit::wire;
use crate::limits::relay_per_ip::CircuitLeg;

/// Reaching the destination node: its address from the directory excluded, dial and
/// handshake included.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(2);

/// Forwarded requests a node reads at once; more wait in libp2p-stream's queue (which
/// drops what overflows it).
const MAX_REQUESTS_IN_FLIGHT: usize = 256;

/// Forwarded circuits waiting for the circuit server; past this, refused
/// `RESOURCE_LIMIT_EXCEEDED`.
pub const MAX_QUEUED: usize = 1024;

/// The acknowledgement byte: the destination node is alive and read the request.
const ACK: u8 = 1;

/// What a source node asks of a destination node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MeshRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub src: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub dst: Vec<u8>,
}

/// How a circuit crosses the fleet, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Across {
    /// A client of this node to a peer on another: this node forwarded it.
    Forwarded,
    /// Another node's client to a peer on this one: this node received it.
    Received,
}

impl Across {
    pub fn name(self) -> &'static str {
        match self {
            Across::Forwarded => "forwarded",
            Across::Received => "received",
        }
    }
}

/// A circuit another node forwarded to this one, for the circuit server.
pub struct MeshCircuit {
    pub src: PeerId,
    pub dst: PeerId,
    /// Answered with a HOP `STATUS`, then spliced.
    pub stream: Stream,
}

/// What the circuit server holds of the fleet.
pub struct FleetLink {
    pub directory: Directory,
    pub mesh: Arc<Mesh>,
    pub received: mpsc::Receiver<MeshCircuit>,
}

impl FleetLink {
    /// Starts serving what other nodes forward to `mesh`.
    pub fn new(
        directory: Directory,
        mesh: Mesh,
        incoming: libp2p_stream::IncomingStreams,
    ) -> FleetLink {
        let (to_server, received) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(read_requests(incoming, to_server));
        FleetLink {
            directory,
            mesh: Arc::new(mesh),
            received,
        }
    }
}

/// How a forwarded circuit went, for the circuit server's counts.
#[derive(Debug)]
pub enum RemoteEvent {
    Opened,
    Denied(Status),
    Ended(Option<io::Error>),
}

/// Everything the source node's forwarding task needs.
pub struct Forwarding {
    pub id: CircuitId,
    pub src: PeerId,
    pub dst: PeerId,
    pub hop: Stream,
    pub src_leg: Option<CircuitLeg>,
    pub limit: Limit,
    pub limits: CircuitLimits,
    pub services: SpliceServices,
    pub directory: Directory,
    pub mesh: Arc<Mesh>,
    pub events: mpsc::UnboundedSender<(CircuitId, RemoteEvent)>,
}

/// Reports a forwarded circuit's outcome once, even if its task is dropped.
struct Report {
    id: CircuitId,
    events: mpsc::UnboundedSender<(CircuitId, RemoteEvent)>,
    opened: bool,
    done: bool,
}

impl Report {
    fn send(&mut self, event: RemoteEvent) {
        match event {
            RemoteEvent::Opened => self.opened = true,
            _ => self.done = true,
        }
        let _ = self.events.send((self.id, event));
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.done {
            let last = if self.opened {
                RemoteEvent::Ended(Some(io::Error::other("forwarding task stopped")))
            } else {
                RemoteEvent::Denied(Status::ConnectionFailed)
            };
            let _ = self.events.send((self.id, last));
        }
    }
}

/// The source node's side of a circuit across the fleet, from the directory lookup to
/// the end of the splice.
pub async fn forward(f: Forwarding) {
    let mut report = Report {
        id: f.id,
        events: f.events.clone(),
        opened: false,
        done: false,
    };
    let Forwarding {
        src, dst, mut hop, ..
    } = f;
    let status = match reach(&f.directory, &f.mesh, src, dst).await {
        Ok(mesh_stream) => match destination_answer(mesh_stream).await {
            Ok(mesh_stream) => {
                let ok = wire::hop_status(Status::Ok, Some(f.limit));
                if wire::write_message(&mut hop, &ok).await.is_err() {
                    // The client left: nobody to answer, and the mesh stream closes.
                    report.send(RemoteEvent::Denied(Status::ConnectionFailed));
                    return;
                }
                report.send(RemoteEvent::Opened);
                let src_end = End {
                    stream: hop,
                    peer: src,
                    leg: f.src_leg,
                };
                let dst_end = End {
                    stream: mesh_stream,
                    peer: dst,
                    leg: None,
                };
                let result = splice::splice(src_end, dst_end, f.limits, f.services).await;
                report.send(RemoteEvent::Ended(result.err()));
                return;
            }
            Err(status) => status,
        },
        Err(status) => status,
    };
    handler::answer(hop, status).await;
    report.send(RemoteEvent::Denied(status));
}

/// The destination's node, and a mesh stream to it that carried the request; or the
/// status the client gets instead.
async fn reach(
    directory: &Directory,
    mesh: &Mesh,
    src: PeerId,
    dst: PeerId,
) -> Result<Stream, Status> {
    let node = match directory.lookup(dst).await {
        Ok(Some(node)) if node != *mesh.local() => node,
        // Not reserved anywhere, or a claim of ours the local server does not hold.
        Ok(_) => return Err(Status::NoReservation),
        Err(why) => {
            tracing::debug!(why, "fleet directory lookup failed");
            return Err(Status::ConnectionFailed);
        }
    };
    let request = MeshRequest {
        src: src.to_bytes(),
        dst: dst.to_bytes(),
    };
    let reached = tokio::time::timeout(REACH_TIMEOUT, async {
        let mut stream = mesh.open(&node).await?;
        wire::write_message(&mut stream, &request)
            .await
            .map_err(|e| e.to_string())?;
        let mut ack = [0u8; 1];
        stream
            .read_exact(&mut ack)
            .await
            .map_err(|e| format!("no acknowledgement: {e}"))?;
        if ack[0] != ACK {
            return Err(format!("unexpected acknowledgement {}", ack[0]));
        }
        Ok::<_, String>(stream)
    })
    .await;
    match reached {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(why)) => {
            tracing::debug!(why, "the destination's node could not be reached");
            Err(Status::ConnectionFailed)
        }
        Err(_) => {
            tracing::debug!("the destination's node did not answer within {REACH_TIMEOUT:?}");
            Err(Status::ConnectionFailed)
        }
    }
}

/// The destination node's answer: the stream to splice on `OK`, or its status.
async fn destination_answer(mut stream: Stream) -> Result<Stream, Status> {
    // The destination node waits up to STREAM_TIMEOUT for its peer's STOP answer.
    let answer = tokio::time::timeout(
        STREAM_TIMEOUT + REACH_TIMEOUT,
        wire::read_message::<HopMessage, _>(&mut stream),
    )
    .await;
    let message = match answer {
        Ok(Ok(message)) => message,
        _ => return Err(Status::ConnectionFailed),
    };
    match message.status.map(Status::try_from) {
        Some(Ok(Status::Ok)) => Ok(stream),
        Some(Ok(status)) => Err(status),
        _ => Err(Status::ConnectionFailed),
    }
}

/// The destination node's side: reads each forwarded request, acknowledges it and
/// queues it for the circuit server.
async fn read_requests(
    mut incoming: libp2p_stream::IncomingStreams,
    to_server: mpsc::Sender<MeshCircuit>,
) {
    let mut reading = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = incoming.next(), if reading.len() < MAX_REQUESTS_IN_FLIGHT => {
                let Some((_node, stream)) = next else { return };
                reading.push(tokio::time::timeout(REACH_TIMEOUT, read_request(stream)));
            }
            Some(read) = reading.next(), if !reading.is_empty() => {
                let Ok(Some(circuit)) = read else { continue };
                if let Err(refused) = to_server.try_send(circuit) {
                    let circuit = refused.into_inner();
                    tokio::spawn(handler::answer(circuit.stream, Status::ResourceLimitExceeded));
                }
            }
        }
    }
}

async fn read_request(mut stream: Stream) -> Option<MeshCircuit> {
    let (src, dst) = read_mesh_request(&mut stream).await?;
    stream.write_all(&[ACK]).await.ok()?;
    stream.flush().await.ok()?;
    Some(MeshCircuit { src, dst, stream })
}

/// The source and destination a [`MeshRequest`] names, read exactly (what follows on
/// the stream is the circuit's); `None` for anything else. Only nodes holding the fleet
/// secret get this far, but their bytes are still read within [`wire`]'s message cap
/// (fuzzed: `fuzz/fuzz_targets/mesh_request.rs`).
pub(crate) async fn read_mesh_request<S>(stream: &mut S) -> Option<(PeerId, PeerId)>
where
    S: AsyncRead + Unpin,
{
    let request: MeshRequest = wire::read_message(stream).await.ok()?;
    let src = PeerId::from_bytes(&request.src).ok()?;
    let dst = PeerId::from_bytes(&request.dst).ok()?;
    Some((src, dst))
}
