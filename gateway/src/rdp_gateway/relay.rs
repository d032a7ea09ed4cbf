//! The relay once both legs are authenticated: two reading tasks (client → target, target →
//! client) that run every frame through the shared [`Tracker`], one writing task per side (so
//! that either direction can also answer the side it reads from), and the passive decoder in
//! its own task behind a bounded queue, so forwarding never waits on decoding.
//!
//! The client's reader also follows the operator's lock on the session
//! ([`crate::live::LockRequest`]) and applies each change with [`Tracker::set_locked`] between
//! two client frames: the releases a lock sends the target are queued after every input frame
//! forwarded before it, and before none forwarded after it.

use super::tracker::{Step, Tracker};
use crate::live::LockRequest;
use crate::rdp::framing::{Frame, FrameSplitter};
use crate::rdp::passive::{DecoderEvent, PassiveDecoder};
use crate::recording::Recorder;
use anyhow::{anyhow, bail, Context, Result};
use ironrdp_pdu::rdp::server_error_info::ProtocolIndependentCode;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

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

/// The operator's lock as one reader follows it; `None` once the session's handle is gone
/// (no lock can come any more).
type LockWatch = Option<watch::Receiver<Option<LockRequest>>>;

/// Resolves when the lock changed or its channel closed (never when there is none to watch);
/// the change then counts as seen.
async fn lock_changed(lock: &mut LockWatch) {
    match lock {
        Some(rx) => {
            let _ = rx.changed().await;
        }
        None => std::future::pending().await,
    }
}

/// Applies a change of the lock not yet seen (with `force`, whatever the lock is now); stops
/// watching once the channel is closed, after applying the value it last held.
async fn follow_lock(
    lock: &mut LockWatch,
    force: bool,
    tracker: &Mutex<Tracker>,
    rec: &Recorder,
    to_client: &mpsc::Sender<Vec<u8>>,
    to_server: &mpsc::Sender<Vec<u8>>,
    decode: &mpsc::Sender<DecodeMsg>,
) -> Result<()> {
    let Some(rx) = lock.as_mut() else {
        return Ok(());
    };
    let (changed, closed) = match rx.has_changed() {
        Ok(changed) => (changed || force, false),
        Err(_) => (true, true),
    };
    if changed {
        let locked = rx.borrow_and_update().is_some();
        let steps = {
            let mut t = tracker
                .lock()
                .map_err(|_| anyhow!("relay state poisoned"))?;
            if t.is_locked() != locked {
                tracing::info!(locked, "operator lock on the client's input changed");
            }
            t.set_locked(locked)
        };
        run_steps(steps, rec, to_client, to_server, decode).await?;
    }
    if closed {
        *lock = None;
    }
    Ok(())
}

/// Reads one side and feeds the tracker; the client's reader also follows `lock`.
#[allow(clippy::too_many_arguments)]
async fn reader<R: AsyncRead + Unpin>(
    mut r: R,
    first: Vec<u8>,
    from_client: bool,
    mut lock: LockWatch,
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
    follow_lock(
        &mut lock, true, &tracker, &rec, &to_client, &to_server, &decode,
    )
    .await?;
    loop {
        loop {
            follow_lock(
                &mut lock, false, &tracker, &rec, &to_client, &to_server, &decode,
            )
            .await?;
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
        let n = tokio::select! {
            () = lock_changed(&mut lock) => {
                follow_lock(
                    &mut lock, true, &tracker, &rec, &to_client, &to_server, &decode,
                )
                .await?;
                continue;
            }
            // Reading is cancel-safe: nothing is lost when the lock wins.
            n = r.read(&mut buf) => n.with_context(|| format!("reading from the {side}"))?,
        };
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
/// (the client is then told why, see [`Tracker::goodbye`]); returns why it ended. `lock` is the
/// operator's lock on the client's input (see [`Tracker::set_locked`]); its channel closing
/// only means that no lock can come any more.
#[allow(clippy::too_many_arguments)]
pub async fn relay<C, T>(
    rec: Arc<Recorder>,
    tracker: Tracker,
    client: C,
    client_first: Vec<u8>,
    target: T,
    target_first: Vec<u8>,
    mut bye: oneshot::Receiver<ProtocolIndependentCode>,
    lock: watch::Receiver<Option<LockRequest>>,
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
            Some(lock),
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
        None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdp::pdu_rewrite::tests as frames;
    use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
    use ironrdp_pdu::mcs::{AttachUserConfirm, McsMessage};
    use ironrdp_pdu::x224::X224;
    use ironrdp_pdu::Action;
    use std::time::Duration;
    use tokio::io::DuplexStream;

    /// One end of a leg, read frame by frame.
    struct Peer {
        io: DuplexStream,
        split: FrameSplitter,
    }

    impl Peer {
        fn new(io: DuplexStream) -> Self {
            Self {
                io,
                split: FrameSplitter::new(),
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.io.write_all(bytes).await.unwrap();
        }

        /// The next frame, if one comes within `wait`.
        async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
            let deadline = tokio::time::Instant::now() + wait;
            let mut buf = vec![0u8; 4096];
            loop {
                if let Some(f) = self.split.next_frame().unwrap() {
                    return Some(f);
                }
                let n = tokio::time::timeout_at(deadline, self.io.read(&mut buf))
                    .await
                    .ok()?
                    .unwrap();
                assert!(n > 0, "the relay closed the connection");
                self.split.feed(&buf[..n]);
            }
        }

        async fn next(&mut self) -> Frame {
            self.next_within(Duration::from_secs(5))
                .await
                .expect("a frame")
        }
    }

    fn key(sc: u8, down: bool) -> Vec<u8> {
        let flags = if down {
            KeyboardFlags::empty()
        } else {
            KeyboardFlags::RELEASE
        };
        crate::rdp::input::encode_fast_path(&[FastPathInputEvent::KeyboardEvent(flags, sc)])
            .unwrap()
            .remove(0)
    }

    /// A clipboard capabilities PDU from the client, in one channel chunk.
    fn clipboard_caps() -> Vec<u8> {
        let pdu = [0x07, 0x00, 0x00, 0x00, 4, 0, 0, 0, 1, 0, 0, 0];
        let mut chunk = u32::try_from(pdu.len()).unwrap().to_le_bytes().to_vec();
        chunk.extend_from_slice(&3u32.to_le_bytes());
        chunk.extend_from_slice(&pdu);
        frames::send_data_request(1004, chunk)
    }

    /// The relay between a client and a target through the connection sequence, an operator
    /// locking and resuming, and the session's handle going away.
    #[tokio::test]
    async fn a_lock_holds_the_clients_input_back_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, _backend) = Recorder::start_in_test_store(dir.path());
        let tracker = crate::rdp_gateway::tracker::tests::tracker();
        let (client, client_end) = tokio::io::duplex(1 << 16);
        let (target, target_end) = tokio::io::duplex(1 << 16);
        let (mut client, mut target) = (Peer::new(client), Peer::new(target));
        let (lock, lock_rx) = watch::channel(None);
        let (_bye, bye_rx) = oneshot::channel();
        let relay = tokio::spawn(relay(
            Arc::new(rec),
            tracker,
            client_end,
            frames::connect_initial_frame(),
            target_end,
            Vec::new(),
            bye_rx,
            lock_rx,
        ));
        // The connection sequence.
        target.next().await; // Connect Initial
        target
            .send(&frames::connect_response_frame(vec![1004], false))
            .await;
        client.next().await;
        let attach =
            ironrdp_core::encode_vec(&X224(McsMessage::AttachUserConfirm(AttachUserConfirm {
                result: 0,
                initiator_id: frames::USER_ID,
            })))
            .unwrap();
        target.send(&attach).await;
        client.next().await;
        client
            .send(&frames::client_info_frame(frames::PASSWORD))
            .await;
        target.next().await;
        target.send(&frames::demand_active_frame()).await;
        client.next().await;
        // The user holds A down.
        client.send(&key(0x1E, true)).await;
        assert_eq!(target.next().await.bytes, key(0x1E, true));
        // Locked: the target gets A's release, then nothing of the user's input, but the
        // clipboard channel still flows.
        lock.send_replace(Some(LockRequest::new("carol", "checking")));
        let release = target.next().await;
        assert_eq!(release.action, Action::FastPath);
        let events = ironrdp_core::decode::<FastPathInput>(&release.bytes).unwrap();
        assert_eq!(
            events.input_events(),
            [FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::RELEASE,
                0x1E
            )]
        );
        client.send(&key(0x30, true)).await;
        client.send(&key(0x1E, false)).await;
        client.send(&clipboard_caps()).await;
        assert_eq!(target.next().await.bytes, clipboard_caps());
        assert!(target
            .next_within(Duration::from_millis(200))
            .await
            .is_none());
        // Resumed: the next input goes through.
        lock.send_replace(None);
        client.send(&key(0x2E, true)).await;
        assert_eq!(target.next().await.bytes, key(0x2E, true));
        // The session's handle goes away: the relay goes on.
        drop(lock);
        client.send(&key(0x2E, false)).await;
        assert_eq!(target.next().await.bytes, key(0x2E, false));
        assert!(!relay.is_finished());
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(ended.contains("client"), "{ended}");
    }
}
