//! Static virtual channel framing shared by the channel filters ([`crate::rdp::cliprdr`],
//! [`crate::rdp::drdynvc`]): the `CHANNEL_PDU_HEADER` that precedes every chunk of a virtual
//! channel PDU ([MS-RDPBCGR] 2.2.6.1.1), the verdict a filter gives a chunk, and single-chunk
//! replies.

/// `CHANNEL_PDU_HEADER.flags`: first chunk of a virtual channel PDU.
pub const CHANNEL_FLAG_FIRST: u32 = 0x0000_0001;
/// `CHANNEL_PDU_HEADER.flags`: last chunk of a virtual channel PDU.
pub const CHANNEL_FLAG_LAST: u32 = 0x0000_0002;
/// `CHANNEL_PDU_HEADER.flags`: the channel header is shown to the application.
pub const CHANNEL_FLAG_SHOW_PROTOCOL: u32 = 0x0000_0010;
/// `CHANNEL_PDU_HEADER.flags`: the chunk is bulk-compressed (its content cannot be read).
pub const CHANNEL_PACKET_COMPRESSED: u32 = 0x0020_0000;
/// Size of `CHANNEL_PDU_HEADER`.
pub const CHANNEL_PDU_HEADER_LEN: usize = 8;

/// What the relay does with one virtual channel payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the payload unchanged to the other side.
    Forward,
    /// Do not forward the payload.
    Drop,
    /// Do not forward the payload; send these complete virtual channel payloads (each with its
    /// `CHANNEL_PDU_HEADER`) back to the side that sent it, in order.
    DropAndReply(Vec<Vec<u8>>),
}

/// One chunk split into its header fields and data: `(length of the whole PDU, flags, data)`;
/// `None` when the header is cut short.
pub fn split_chunk(chunk: &[u8]) -> Option<(u32, u32, &[u8])> {
    Some((
        u32_at(chunk, 0)?,
        u32_at(chunk, 4)?,
        chunk.get(CHANNEL_PDU_HEADER_LEN..)?,
    ))
}

/// `pdu` as one virtual channel payload (first and last chunk), with
/// `CHANNEL_FLAG_SHOW_PROTOCOL` when the side it is sent in the name of uses it.
pub fn single_chunk(pdu: &[u8], show_protocol: bool) -> Vec<u8> {
    let mut flags = CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST;
    if show_protocol {
        flags |= CHANNEL_FLAG_SHOW_PROTOCOL;
    }
    let mut out = Vec::with_capacity(CHANNEL_PDU_HEADER_LEN + pdu.len());
    // Replies are a few bytes long, far below u32::MAX.
    out.extend_from_slice(&u32::try_from(pdu.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(pdu);
    out
}

/// The little-endian `u32` at `at`, if the bytes are there.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_chunk_round_trips_through_split_chunk() {
        let c = single_chunk(b"\x01\x02\x03", true);
        assert_eq!(
            split_chunk(&c),
            Some((
                3,
                CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST | CHANNEL_FLAG_SHOW_PROTOCOL,
                &b"\x01\x02\x03"[..]
            ))
        );
        assert_eq!(split_chunk(&c[..7]), None);
    }
}
