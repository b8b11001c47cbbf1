//! The lightweight reserver of the capacity and churn scenarios: one fresh identity, one
//! TCP connection to the relay (noise + yamux, no Swarm, no behaviours), a HOP RESERVE
//! written by hand, and a task that keeps polling the muxer so yamux keeps answering.
//! As a circuit destination it accepts STOP; as a source it sends HOP CONNECT. A full
//! client swarm per identity would cost the bench more than the relay.
//!
//! `--serve reservers` (hidden) runs thousands of them in a child process, so no single
//! process holds every socket; [`Fleet`] is the bench's side of those children.

use std::io::{BufRead, BufReader, Write};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _};
use dusk_relay::circuit::proto::{
    frame, HopMessage, Peer, StopMessage, CONNECT, HOP_STATUS, OK, RESERVE, STOP_CONNECT,
    STOP_STATUS,
};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt, SubstreamBox};
use libp2p::core::transport::{Boxed, DialOpts, PortUse};
use libp2p::core::upgrade::Version;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::{noise, relay, tcp, yamux, Multiaddr, PeerId, Transport as _};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::peers::{within, EVENT_TIMEOUT};

/// libp2p-relay's cap on one HOP or STOP message.
const MAX_MESSAGE: usize = 4096;
const MULTISTREAM: &[u8] = b"/multistream/1.0.0\n";
/// Concurrent dials of one reserver child: well under dusk-relay's 1,024 pending
/// incoming connections with several children.
const DIALS_PER_PROCESS: usize = 64;

async fn send(stream: &mut SubstreamBox, message: &impl Message) -> anyhow::Result<()> {
    stream
        .write_all(&message.encode_length_delimited_to_vec())
        .await
        .context("write")?;
    stream.flush().await.context("flush")?;
    Ok(())
}

/// One varint-length-prefixed frame of at most `max` bytes.
async fn read_frame(stream: &mut SubstreamBox, max: usize) -> anyhow::Result<Vec<u8>> {
    let len = unsigned_varint::aio::read_usize(&mut *stream)
        .await
        .map_err(|e| anyhow!("read a length prefix: {e}"))?;
    ensure!(len <= max, "a frame of {len} bytes (at most {max})");
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.context("read a frame")?;
    Ok(buf)
}

async fn recv<M: Message + Default>(stream: &mut SubstreamBox) -> anyhow::Result<M> {
    let frame = read_frame(stream, MAX_MESSAGE).await?;
    M::decode(&frame[..]).context("decode a relay message")
}

/// multistream-select 1.0 as the dialer, one protocol: header and protocol in one write,
/// then both echoes.
async fn select(stream: &mut SubstreamBox, protocol: &str) -> anyhow::Result<()> {
    let line = format!("{protocol}\n");
    let mut out = frame(MULTISTREAM);
    out.extend(frame(line.as_bytes()));
    stream.write_all(&out).await.context("write")?;
    stream.flush().await.context("flush")?;
    let header = read_frame(stream, 1024).await?;
    ensure!(header == MULTISTREAM, "not multistream-select 1.0");
    let answer = read_frame(stream, 1024).await?;
    ensure!(
        answer == line.as_bytes(),
        "the relay answered {:?} to {protocol}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

/// multistream-select 1.0 as the listener: `na` to everything but `protocol` (the
/// relay's identify and ping, which then give up on this peer).
async fn accept(stream: &mut SubstreamBox, protocol: &str) -> anyhow::Result<()> {
    let line = format!("{protocol}\n");
    let header = read_frame(stream, 1024).await?;
    ensure!(header == MULTISTREAM, "not multistream-select 1.0");
    stream.write_all(&frame(MULTISTREAM)).await?;
    loop {
        let asked = read_frame(stream, 1024).await?;
        let answer = if asked == line.as_bytes() {
            frame(&asked)
        } else {
            frame(b"na\n")
        };
        stream.write_all(&answer).await?;
        stream.flush().await?;
        if asked == line.as_bytes() {
            return Ok(());
        }
    }
}

/// Keeps a circuit's stream open, idle, until the other end closes it.
async fn hold(mut stream: SubstreamBox) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// An inbound stream from the relay: STOP CONNECT is answered OK and its circuit held;
/// anything else is refused.
async fn answer_inbound(mut stream: SubstreamBox) {
    let stop = async {
        accept(&mut stream, relay::STOP_PROTOCOL_NAME.as_ref()).await?;
        let connect: StopMessage = recv(&mut stream).await?;
        ensure!(
            connect.r#type == STOP_CONNECT,
            "STOP type {}",
            connect.r#type
        );
        let ok = StopMessage {
            r#type: STOP_STATUS,
            status: Some(OK),
            ..StopMessage::default()
        };
        send(&mut stream, &ok).await
    };
    if let Ok(Ok(())) = tokio::time::timeout(EVENT_TIMEOUT, stop).await {
        hold(stream).await;
    }
}

/// Something to run on a new outbound stream of the connection.
type Job = Box<dyn FnOnce(SubstreamBox) -> BoxFuture<'static, ()> + Send>;

/// One connection: the muxer polled (so yamux answers pings and window updates),
/// inbound streams answered, outbound streams opened for [`Job`]s, and every stream's
/// future polled here. Ends when the connection fails or the [`Reserver`] is dropped.
struct Conn {
    muxer: StreamMuxerBox,
    jobs: mpsc::UnboundedReceiver<Job>,
    waiting: Option<Job>,
    work: FuturesUnordered<BoxFuture<'static, ()>>,
}

impl std::future::Future for Conn {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this.muxer.poll_unpin(cx) {
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        loop {
            match this.muxer.poll_inbound_unpin(cx) {
                Poll::Ready(Ok(stream)) => this.work.push(answer_inbound(stream).boxed()),
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        loop {
            if this.waiting.is_none() {
                match this.jobs.poll_recv(cx) {
                    Poll::Ready(Some(job)) => this.waiting = Some(job),
                    // The Reserver was dropped: close the connection.
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            match this.muxer.poll_outbound_unpin(cx) {
                Poll::Ready(Ok(stream)) => {
                    if let Some(job) = this.waiting.take() {
                        this.work.push(job(stream));
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        while let Poll::Ready(Some(())) = this.work.poll_next_unpin(cx) {}
        Poll::Pending
    }
}

/// A peer holding a reservation on the relay over its own connection. Dropping it
/// closes the connection (and so ends the reservation).
pub struct Reserver {
    pub peer_id: PeerId,
    jobs: mpsc::UnboundedSender<Job>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tcp_transport(
    keypair: &libp2p::identity::Keypair,
) -> anyhow::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    Ok(
        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
            .upgrade(Version::V1Lazy)
            .authenticate(noise::Config::new(keypair).context("noise config")?)
            .multiplex(yamux::Config::default())
            .timeout(Duration::from_secs(20))
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    )
}

impl Reserver {
    /// A fresh identity dials `relay` (a TCP address ending in `/p2p/<relay>`) and
    /// reserves; returns once the relay answered OK.
    pub async fn reserve(relay: &Multiaddr) -> anyhow::Result<Reserver> {
        let mut addr = relay.clone();
        let relay_peer = match addr.pop() {
            Some(Protocol::P2p(peer)) => peer,
            _ => bail!("{relay}: expected an address ending in /p2p/<relay peer id>"),
        };
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let mut transport = tcp_transport(&keypair)?;
        let dial = transport
            .dial(
                addr,
                DialOpts {
                    role: Endpoint::Dialer,
                    port_use: PortUse::New,
                },
            )
            .map_err(|e| anyhow!("dial {relay}: {e}"))?;
        let (peer, muxer) = dial.await.map_err(|e| anyhow!("connect to {relay}: {e}"))?;
        ensure!(peer == relay_peer, "{relay} answered as {peer}");
        let (jobs, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(Conn {
            muxer,
            jobs: rx,
            waiting: None,
            work: FuturesUnordered::new(),
        });
        let reserver = Reserver {
            peer_id: keypair.public().to_peer_id(),
            jobs,
            task,
        };
        let (tx, rx) = oneshot::channel();
        reserver.run(Box::new(move |mut stream| {
            async move {
                let _ = tx.send(hop_reserve(&mut stream).await);
            }
            .boxed()
        }))?;
        rx.await
            .map_err(|_| anyhow!("the connection closed before the reservation"))??;
        Ok(reserver)
    }

    fn run(&self, job: Job) -> anyhow::Result<()> {
        self.jobs
            .send(job)
            .map_err(|_| anyhow!("the connection to the relay is closed"))
    }

    /// HOP CONNECT to `dest` through the relay; the circuit is held, idle, until the
    /// connection closes.
    pub async fn connect(&self, dest: PeerId) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.run(Box::new(move |mut stream| {
            async move {
                let result = hop_connect(&mut stream, dest).await;
                let ok = result.is_ok();
                let _ = tx.send(result);
                if ok {
                    hold(stream).await;
                }
            }
            .boxed()
        }))?;
        rx.await
            .map_err(|_| anyhow!("the connection closed before the circuit"))?
    }
}

async fn hop_reserve(stream: &mut SubstreamBox) -> anyhow::Result<()> {
    select(stream, relay::HOP_PROTOCOL_NAME.as_ref()).await?;
    let reserve = HopMessage {
        r#type: RESERVE,
        ..HopMessage::default()
    };
    send(stream, &reserve).await?;
    status(recv(stream).await?, "reservation")
}

async fn hop_connect(stream: &mut SubstreamBox, dest: PeerId) -> anyhow::Result<()> {
    select(stream, relay::HOP_PROTOCOL_NAME.as_ref()).await?;
    let connect = HopMessage {
        r#type: CONNECT,
        peer: Some(Peer {
            id: dest.to_bytes(),
            addrs: Vec::new(),
        }),
        ..HopMessage::default()
    };
    send(stream, &connect).await?;
    status(recv(stream).await?, "circuit")
}

fn status(answer: HopMessage, what: &str) -> anyhow::Result<()> {
    ensure!(
        answer.r#type == HOP_STATUS,
        "HOP type {} in answer",
        answer.r#type
    );
    match answer.status {
        Some(OK) => Ok(()),
        other => bail!("{what} refused with status {other:?}"),
    }
}

/// `--serve reservers`: `count` reservers on `relay`, each printed as `peer <id>` once
/// reserved, then `error <first error>` (if any) and `reserved <ok> <failed>`. Then
/// each `circuit <dest peer id>` line on stdin opens an idle circuit from one of this
/// process's reservers (taken from the last reserved backwards) to `dest`, answered by
/// `circuit ok` or `circuit err <reason>`. Exits when stdin closes.
pub fn serve(relay: &Multiaddr, count: usize) -> anyhow::Result<()> {
    // Each reserver is a socket; the hard limit is what the machine allows.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("reserver child: cannot raise the open-file limit: {e}");
    }
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
        // The bench went away (or is done with us).
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let mut held = Vec::with_capacity(count);
        let mut failed = 0usize;
        let mut first_error = None;
        let mut attempts = futures::stream::iter(0..count)
            .map(|_| async {
                within(EVENT_TIMEOUT, "a reservation", Reserver::reserve(relay)).await?
            })
            .buffer_unordered(DIALS_PER_PROCESS);
        while let Some(result) = attempts.next().await {
            match result {
                Ok(reserver) => {
                    println!("peer {}", reserver.peer_id);
                    held.push(std::sync::Arc::new(reserver));
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(format!("{e:#}"));
                }
            }
        }
        drop(attempts);
        {
            let mut out = std::io::stdout().lock();
            if let Some(e) = first_error {
                writeln!(out, "error {}", e.replace('\n', " "))?;
            }
            writeln!(out, "reserved {} {failed}", held.len())?;
            out.flush()?;
        }
        let mut sources = held.iter().rev().cloned();
        while let Some(line) = lines.recv().await {
            let Some(dest) = line.strip_prefix("circuit ") else {
                continue;
            };
            let source = sources.next();
            let dest = dest.trim().parse::<PeerId>();
            tokio::spawn(async move {
                let result = match (source, dest) {
                    (Some(source), Ok(dest)) => {
                        within(EVENT_TIMEOUT, "a circuit", source.connect(dest)).await?
                    }
                    (None, _) => Err(anyhow!("no reserver left to be a circuit source")),
                    (_, Err(e)) => Err(anyhow!("bad peer id: {e}")),
                };
                let answer = match result {
                    Ok(()) => "circuit ok".to_string(),
                    Err(e) => format!("circuit err {}", format!("{e:#}").replace('\n', " ")),
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{answer}");
                let _ = out.flush();
                anyhow::Ok(())
            });
        }
        anyhow::Ok(())
    })
}

/// The bench's side of the reserver children: their stdin, and their stdout lines on
/// one channel as (child index, line); `None` when a child's stdout closed.
pub struct Fleet {
    children: Vec<(Child, ChildStdin)>,
    lines: mpsc::UnboundedReceiver<(usize, Option<String>)>,
    /// Each child's reserved peers, in the order it reported them.
    pub peers: Vec<Vec<PeerId>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the fleet reported for a step: how many succeeded, failed, and the first error.
pub struct Tally {
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

impl Fleet {
    /// `total` reservers on `relay` over `processes` children (as evenly as possible).
    pub fn spawn(relay: &Multiaddr, total: usize, processes: usize) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let processes = processes.clamp(1, total.max(1));
        let (tx, lines) = mpsc::unbounded_channel();
        let mut fleet = Fleet {
            children: Vec::new(),
            lines,
            peers: vec![Vec::new(); processes],
        };
        for i in 0..processes {
            let count = total * (i + 1) / processes - total * i / processes;
            let mut child = Command::new(&exe)
                .args(["--serve", "reservers", "--relay"])
                .arg(relay.to_string())
                .args(["--reservations", &count.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("cannot start a reserver child")?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                let _ = child.kill();
                let _ = child.wait();
                bail!("a reserver child has no stdin or stdout pipe");
            };
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((i, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((i, None));
            });
            fleet.children.push((child, stdin));
        }
        Ok(fleet)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(c, _)| c.id()).collect()
    }

    async fn line(&mut self) -> anyhow::Result<(usize, String)> {
        match self.lines.recv().await {
            Some((i, Some(line))) => Ok((i, line)),
            Some((i, None)) => Err(anyhow!("reserver child {i} exited")),
            None => Err(anyhow!("every reserver child exited")),
        }
    }

    /// Waits until every child has reported its reservations; `progress` gets the count
    /// of reserved peers every `every`.
    pub async fn reserved(
        &mut self,
        every: usize,
        progress: impl Fn(usize),
    ) -> anyhow::Result<Tally> {
        let mut tally = Tally {
            ok: 0,
            failed: 0,
            first_error: None,
        };
        let mut done = 0;
        while done < self.children.len() {
            let (i, line) = self.line().await?;
            if let Some(peer) = line.strip_prefix("peer ") {
                let peer = peer
                    .parse::<PeerId>()
                    .map_err(|e| anyhow!("reserver child {i}: bad peer line {line:?}: {e}"))?;
                self.peers[i].push(peer);
                let ok: usize = self.peers.iter().map(Vec::len).sum();
                if ok.is_multiple_of(every.max(1)) {
                    progress(ok);
                }
            } else if let Some(e) = line.strip_prefix("error ") {
                tally.first_error.get_or_insert_with(|| e.to_string());
            } else if let Some(counts) = line.strip_prefix("reserved ") {
                let mut it = counts.split_whitespace().map(str::parse::<usize>);
                match (it.next(), it.next()) {
                    (Some(Ok(ok)), Some(Ok(failed))) => {
                        tally.ok += ok;
                        tally.failed += failed;
                    }
                    _ => bail!("reserver child {i}: bad line {line:?}"),
                }
                done += 1;
            }
        }
        Ok(tally)
    }

    /// `n` idle circuits between reserved peers: the destinations are the peers each
    /// child reported first (taken in turn from every child), each asked for by the
    /// next child, whose source is one of its last reserved peers.
    pub async fn circuits(&mut self, n: usize) -> anyhow::Result<Tally> {
        let children = self.children.len();
        let mut asked = 0;
        let mut row = 0;
        while asked < n {
            let mut any = false;
            for i in 0..children {
                if asked == n {
                    break;
                }
                // Destinations from the front half only: the back half are sources.
                let Some(dest) = self.peers[i]
                    .get(row)
                    .filter(|_| row < self.peers[i].len() / 2)
                else {
                    continue;
                };
                any = true;
                let (_, stdin) = &mut self.children[(i + 1) % children];
                writeln!(stdin, "circuit {dest}").context("write to a reserver child")?;
                asked += 1;
            }
            if !any {
                break;
            }
            row += 1;
        }
        for (_, stdin) in &mut self.children {
            stdin.flush().context("write to a reserver child")?;
        }
        let mut tally = Tally {
            ok: 0,
            failed: n - asked,
            first_error: (asked < n).then(|| format!("only {asked} destinations available")),
        };
        while tally.ok + tally.failed < n {
            let (_, line) = self.line().await?;
            if line == "circuit ok" {
                tally.ok += 1;
            } else if let Some(e) = line.strip_prefix("circuit err ") {
                tally.failed += 1;
                tally.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        Ok(tally)
    }
}
