//! The relay once both legs are authenticated: two reading tasks (client → target, target →
//! client) that run every frame through the shared [`Tracker`], one writing task per side (so
//! that either direction can also answer the side it reads from), and the passive decoder in
//! its own task behind a bounded queue, so forwarding never waits on decoding.

use super::tracker::{Step, Tracker};
use crate::rdp::framing::{Frame, FrameSplitter};
use crate::rdp::passive::{DecoderEvent, PassiveDecoder};
use crate::recording::Recorder;
use anyhow::{anyhow, bail, Context, Result};
use ironrdp_pdu::rdp::server_error_info::ProtocolIndependentCode;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Read buffer per direction.
const READ_CHUNK: usize = 64 * 1024;
/// Frames queued for one side's writer.
const WRITE_QUEUE: usize = 512;
/// Frames queued for the decoder (each ≤ 64 KiB): 64 MiB at most. Only a decoder that far behind
/// makes forwarding wait.
const DECODE_QUEUE: usize = 1024;

/// What the decoder task is given.
#[derive(Debug)]
pub enum DecodeMsg {
    /// Start decoding with these MCS ids.
    Start {
        /// I/O channel.
        io_channel: u16,
        /// User channel.
        user_channel: u16,
        /// Message channel.
        message_channel: Option<u16>,
    },
    /// A server frame.
    Frame(Frame),
    /// The admin's pointer position.
    Pointer(u16, u16),
}

/// Counters reported when the relay ends.
#[derive(Debug, Default, Clone)]
pub struct RelayStats {
    /// Server frames the decoder could not decode (forwarded all the same).
    pub decode_errors: u64,
}

/// Writes everything queued for one side, flushing once per batch.
async fn writer<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    side: &'static str,
) -> Result<String> {
    while let Some(first) = rx.recv().await {
        w.write_all(&first)
            .await
            .with_context(|| format!("writing to the {side}"))?;
        while let Ok(more) = rx.try_recv() {
            w.write_all(&more)
                .await
                .with_context(|| format!("writing to the {side}"))?;
        }
        w.flush()
            .await
            .with_context(|| format!("writing to the {side}"))?;
    }
    let _ = w.shutdown().await;
    Ok(format!("{side} writer closed"))
}

/// Runs the tracker's steps for one frame.
async fn run_steps(
    steps: Vec<Step>,
    rec: &Recorder,
    to_client: &mpsc::Sender<Vec<u8>>,
    to_server: &mpsc::Sender<Vec<u8>>,
    decode: &mpsc::Sender<DecodeMsg>,
) -> Result<()> {
    for step in steps {
        match step {
            Step::ToServer(b) => to_server
                .send(b)
                .await
                .map_err(|_| anyhow!("target connection closed"))?,
            Step::ToClient(b) => to_client
                .send(b)
                .await
                .map_err(|_| anyhow!("client connection closed"))?,
            Step::Input(i) => rec.input(i)?,
            Step::Event(e) => rec.event(e)?,
            Step::StartDecoder {
                io_channel,
                user_channel,
                message_channel,
            } => decode
                .send(DecodeMsg::Start {
                    io_channel,
                    user_channel,
                    message_channel,
                })
                .await
                .map_err(|_| anyhow!("recording decoder stopped"))?,
            Step::Decode(f) => decode
                .send(DecodeMsg::Frame(f))
                .await
                .map_err(|_| anyhow!("recording decoder stopped"))?,
            Step::Pointer(x, y) => {
                // The cursor is cosmetic: never wait for the decoder because of it.
                let _ = decode.try_send(DecodeMsg::Pointer(x, y));
            }
        }
    }
    Ok(())
}

/// Reads one side and feeds the tracker.
#[allow(clippy::too_many_arguments)]
async fn reader<R: AsyncRead + Unpin>(
    mut r: R,
    first: Vec<u8>,
    from_client: bool,
    tracker: Arc<Mutex<Tracker>>,
    rec: Arc<Recorder>,
    to_client: mpsc::Sender<Vec<u8>>,
    to_server: mpsc::Sender<Vec<u8>>,
    decode: mpsc::Sender<DecodeMsg>,
) -> Result<String> {
    let side = if from_client { "client" } else { "target" };
    let mut splitter = FrameSplitter::new();
    splitter.feed(&first);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        loop {
            let frame = match splitter.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => bail!("{side} sent a malformed frame: {e}"),
            };
            let steps = {
                let mut t = tracker
                    .lock()
                    .map_err(|_| anyhow!("relay state poisoned"))?;
                if from_client {
                    t.from_client(frame)?
                } else {
                    t.from_server(frame)?
                }
            };
            run_steps(steps, &rec, &to_client, &to_server, &decode).await?;
        }
        let n = r
            .read(&mut buf)
            .await
            .with_context(|| format!("reading from the {side}"))?;
        if n == 0 {
            return Ok(format!("{side} closed the connection"));
        }
        splitter.feed(&buf[..n]);
    }
}

/// Decodes server frames into the recording.
async fn decoder(rec: Arc<Recorder>, mut rx: mpsc::Receiver<DecodeMsg>) -> Result<RelayStats> {
    let mut dec: Option<PassiveDecoder> = None;
    let mut stats = RelayStats::default();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                DecodeMsg::Start {
                    io_channel,
                    user_channel,
                    message_channel,
                } => {
                    dec = Some(PassiveDecoder::new(
                        io_channel,
                        user_channel,
                        message_channel,
                    ))
                }
                DecodeMsg::Pointer(x, y) => {
                    if let Some(d) = dec.as_mut() {
                        d.client_pointer(x, y);
                    }
                }
                DecodeMsg::Frame(f) => {
                    let Some(d) = dec.as_mut() else { continue };
                    match d.server_frame(f.action, &f.bytes) {
                        Ok(events) => {
                            for e in events {
                                match e {
                                    DecoderEvent::Activated { width, height } => {
                                        rec.resize(u32::from(width), u32::from(height))?;
                                    }
                                    DecoderEvent::Terminated(why) => {
                                        rec.event(psmgate_codecs::transcript::EventKind::Marker {
                                            label: format!("target ended the session: {why}"),
                                        })?;
                                    }
                                    _ => {}
                                }
                            }
                        }
                        Err(e) => {
                            stats.decode_errors += 1;
                            if stats.decode_errors <= 10 {
                                tracing::warn!(error = %e, "a server frame could not be decoded (forwarded; the recording may miss it)");
                            }
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        if let Some(d) = dec.as_mut() {
            if d.is_active() {
                match rec.screen(|fb| Ok(d.flush_into(fb))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => bail!("decoded screen could not be recorded: {e}"),
                    Err(e) => bail!("recording refused the screen update: {e}"),
                }
            }
        }
    }
    Ok(stats)
}

/// Relays until either side closes, a task fails, or psmgate ends the session through `bye`
/// (the client is then told why, see [`Tracker::goodbye`]); returns why it ended.
pub async fn relay<C, T>(
    rec: Arc<Recorder>,
    tracker: Tracker,
    client: C,
    client_first: Vec<u8>,
    target: T,
    target_first: Vec<u8>,
    mut bye: oneshot::Receiver<ProtocolIndependentCode>,
) -> Result<String>
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let tracker = Arc::new(Mutex::new(tracker));
    let (cr, cw) = tokio::io::split(client);
    let (tr, tw) = tokio::io::split(target);
    let (to_client, client_rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let (to_server, server_rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let (decode_tx, decode_rx) = mpsc::channel::<DecodeMsg>(DECODE_QUEUE);
    let to_client_bye = to_client.clone();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move { writer(cw, client_rx, "client").await });
    tasks.spawn(async move { writer(tw, server_rx, "target").await });
    {
        let (tracker, rec, to_client, to_server, decode) = (
            tracker.clone(),
            rec.clone(),
            to_client.clone(),
            to_server.clone(),
            decode_tx.clone(),
        );
        tasks.spawn(reader(
            cr,
            client_first,
            true,
            tracker,
            rec,
            to_client,
            to_server,
            decode,
        ));
    }
    tasks.spawn(reader(
        tr,
        target_first,
        false,
        tracker.clone(),
        rec.clone(),
        to_client,
        to_server,
        decode_tx,
    ));
    let mut dec = tokio::spawn(decoder(rec.clone(), decode_rx));
    let end = tokio::select! {
        r = tasks.join_next() => match r {
            Some(Ok(Ok(why))) => Ok(why),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow!("relay task failed: {e}")),
            None => Ok("relay ended".to_string()),
        },
        r = &mut dec => match r {
            Ok(Ok(_)) => Ok("recording decoder ended".to_string()),
            Ok(Err(e)) => Err(e.context("recording decoder failed")),
            Err(e) => Err(anyhow!("recording decoder failed: {e}")),
        },
        Ok(code) = &mut bye => {
            let frames = tracker.lock().ok().and_then(|t| t.goodbye(code));
            if let Some(frames) = frames {
                if to_client_bye.send(frames).await.is_ok() {
                    // Give the client's writer the moment it needs to flush it.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
            Ok(format!("psmgate ended the session ({code:?})"))
        }
    };
    drop(to_client_bye);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // The decoder finishes what was forwarded (its queue closed with the readers), so the
    // recording has the last screen.
    if !dec.is_finished() {
        match tokio::time::timeout(std::time::Duration::from_secs(5), &mut dec).await {
            Ok(Ok(Ok(stats))) if stats.decode_errors > 0 => {
                tracing::warn!(
                    errors = stats.decode_errors,
                    "server frames that could not be decoded"
                );
            }
            Ok(_) => {}
            Err(_) => dec.abort(),
        }
    }
    end
}
