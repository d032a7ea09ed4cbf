//! Client stream tests: every message round-trips, splits, limits and errors.

use crate::vnc::limits::{MAX_CUT_TEXT_KEPT, MAX_ENCODINGS};
use crate::vnc::{ClientEvent, ClientStream, CutText, PixelFormat, RfbError, Screen};
use psmgate_codecs::Rect;

fn all_messages() -> Vec<ClientEvent> {
    vec![
        ClientEvent::SetPixelFormat(PixelFormat::FORCED),
        ClientEvent::SetEncodings(vec![16, 7, -239, -223, 0xC0A1_E5CE_u32 as i32]),
        ClientEvent::SetEncodings(vec![]),
        ClientEvent::UpdateRequest {
            incremental: true,
            rect: Rect::new(1, 2, 1920, 1080),
        },
        ClientEvent::Key {
            keysym: 0xff0d,
            down: true,
        },
        ClientEvent::QemuKey {
            keysym: 0x61,
            keycode: 0x1e,
            down: false,
        },
        ClientEvent::Pointer {
            mask: 0b101,
            x: 640,
            y: 480,
        },
        ClientEvent::CutText(CutText {
            total_len: 5,
            text: b"hi \xe9!".to_vec(),
            extended: false,
        }),
        ClientEvent::CutText(CutText {
            total_len: 8,
            text: vec![0, 0, 0, 1, 0, 0, 0, 0],
            extended: true,
        }),
        ClientEvent::ContinuousUpdates {
            enable: true,
            rect: Rect::new(0, 0, 800, 600),
        },
        ClientEvent::Fence {
            flags: 0x8000_0003,
            payload: vec![1, 2, 3],
        },
        ClientEvent::Xvp {
            version: 1,
            code: 3,
        },
        ClientEvent::SetDesktopSize {
            width: 1024,
            height: 768,
            screens: vec![Screen {
                id: 1,
                x: 0,
                y: 0,
                width: 1024,
                height: 768,
                flags: 0,
            }],
        },
    ]
}

fn parse_all(bytes: &[u8], chunk: usize) -> Result<Vec<(ClientEvent, usize)>, String> {
    let mut s = ClientStream::new();
    let mut out = Vec::new();
    for c in bytes.chunks(chunk.max(1)) {
        s.feed(c);
        while let Some(p) = s.next_event().map_err(|e| e.to_string())? {
            out.push((p.event, p.len));
        }
    }
    Ok(out)
}

#[test]
fn every_message_round_trips_at_every_split() {
    let msgs = all_messages();
    let mut bytes = Vec::new();
    let mut lens = Vec::new();
    for m in &msgs {
        let b = m.to_bytes();
        lens.push(b.len());
        bytes.extend(b);
    }
    // Fixed sizes from RFC 6143.
    assert_eq!(&lens[..7], &[20, 24, 4, 10, 8, 12, 6]);
    let want: Vec<(ClientEvent, usize)> = msgs.into_iter().zip(lens).collect();
    for chunk in [1, 2, 3, 7, 64, bytes.len()] {
        assert_eq!(parse_all(&bytes, chunk).unwrap(), want, "chunk {chunk}");
    }
}

#[test]
fn limits_and_errors() {
    let mut too_many = vec![2, 0];
    too_many.extend_from_slice(&(MAX_ENCODINGS + 1).to_be_bytes());
    let err = parse_all(&too_many, 100).unwrap_err();
    assert!(err.contains("SetEncodings count"), "{err}");
    assert!(parse_all(&[9], 1)
        .unwrap_err()
        .contains("unknown client message type 9"));
    assert!(parse_all(&[255, 1, 0, 0], 1).unwrap_err().contains("QEMU"));
    let mut s = ClientStream::new();
    s.feed(&[9, 4, 0, 0, 0, 0, 0, 0, 0]);
    assert!(s.next_event().is_err());
    assert!(matches!(s.next_event(), Err(RfbError::Failed(_))));
}

#[test]
fn huge_client_cut_text_is_streamed() {
    let total = MAX_CUT_TEXT_KEPT + 1000;
    let mut s = ClientStream::new();
    let mut head = vec![6, 0, 0, 0];
    head.extend_from_slice(&(total as u32).to_be_bytes());
    s.feed(&head);
    assert!(s.next_event().unwrap().is_none());
    let chunk = vec![b'y'; 1 << 20];
    let mut left = total;
    let mut got = None;
    while left > 0 {
        let n = left.min(chunk.len());
        s.feed(&chunk[..n]);
        left -= n;
        if let Some(p) = s.next_event().unwrap() {
            got = Some(p);
        }
        assert!(s.heap_bytes() <= 2 * MAX_CUT_TEXT_KEPT + 2 * chunk.len());
    }
    let p = got.expect("event");
    assert_eq!(p.len, total + 8);
    let ClientEvent::CutText(t) = p.event else {
        panic!()
    };
    assert!(t.truncated());
    assert_eq!(t.text.len(), MAX_CUT_TEXT_KEPT);
    // Re-encoding writes the kept bytes with a matching length.
    let re = ClientEvent::CutText(t).to_bytes();
    assert_eq!(re.len(), 8 + MAX_CUT_TEXT_KEPT);
    assert_eq!(
        u32::from_be_bytes([re[4], re[5], re[6], re[7]]) as usize,
        MAX_CUT_TEXT_KEPT
    );
}
