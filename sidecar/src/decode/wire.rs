//! The schema registry's wire format: what is in front of a record's payload.
//!
//! Pure. A record value in the wire format is a magic byte `0`, the schema id (4 bytes, big
//! endian), then the payload. Protobuf payloads start with the message indexes: which message of
//! the schema's `.proto` file the payload is (a path through nested messages), as a count and
//! that many indexes, each a zigzag varint; the single byte `0` is the common case `[0]`, the
//! file's first message.

/// The magic byte of the wire format.
pub const MAGIC: u8 = 0;
/// Magic byte + schema id.
pub const HEADER_LEN: usize = 5;
/// Deeper message paths than this are refused (a corrupt payload could claim millions).
pub const MAX_MESSAGE_INDEXES: usize = 64;

/// Why a value is not in the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "value is not in the schema registry wire format: {len} bytes, shorter than its 5-byte header"
    )]
    Short { len: usize },
    #[error(
        "value is not in the schema registry wire format: first byte 0x{first:02x}, expected the magic byte 0x00"
    )]
    Magic { first: u8 },
    #[error("protobuf message indexes are corrupt: {0}")]
    Indexes(&'static str),
}

/// The schema id and the payload after the header.
pub fn split(value: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if value.len() < HEADER_LEN {
        // A single wrong first byte says more than the length does.
        if let Some(&first) = value.first()
            && first != MAGIC
        {
            return Err(WireError::Magic { first });
        }
        return Err(WireError::Short { len: value.len() });
    }
    if value[0] != MAGIC {
        return Err(WireError::Magic { first: value[0] });
    }
    let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Ok((id, &value[HEADER_LEN..]))
}

/// The protobuf message indexes at the start of `payload`, and the message bytes after them.
pub fn message_indexes(payload: &[u8]) -> Result<(Vec<usize>, &[u8]), WireError> {
    let mut rest = payload;
    let count = zigzag_varint(&mut rest)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_MESSAGE_INDEXES)
        .ok_or(WireError::Indexes(
            "more message indexes than a schema can have",
        ))?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let index = zigzag_varint(&mut rest)?;
        indexes.push(usize::try_from(index).map_err(|_| WireError::Indexes("negative index"))?);
    }
    Ok((indexes, rest))
}

/// Reads one zigzag-encoded varint (at most 10 bytes) off the front of `bytes`.
fn zigzag_varint(bytes: &mut &[u8]) -> Result<i64, WireError> {
    let mut raw: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(WireError::Indexes("truncated varint"))
}

/// The wire-format header for `id` (for producers: the demo, tests).
pub fn header(id: u32) -> [u8; HEADER_LEN] {
    let b = id.to_be_bytes();
    [MAGIC, b[0], b[1], b[2], b[3]]
}

/// Encodes message indexes as the wire format does (`[0]` as the single byte `0`).
pub fn encode_message_indexes(indexes: &[usize]) -> Vec<u8> {
    if indexes == [0] {
        return vec![0];
    }
    let mut out = Vec::new();
    for n in std::iter::once(indexes.len()).chain(indexes.iter().copied()) {
        let n = n as i64;
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_payload_are_split() {
        let mut v = header(258).to_vec();
        v.extend_from_slice(b"payload");
        assert_eq!(split(&v), Ok((258, &b"payload"[..])));
        assert_eq!(split(&header(7)), Ok((7, &b""[..])));
    }

    #[test]
    fn values_not_in_the_wire_format_are_refused_with_what_was_wrong() {
        assert_eq!(split(b"{\"a\":1}"), Err(WireError::Magic { first: b'{' }));
        assert_eq!(split(&[0, 0, 1]), Err(WireError::Short { len: 3 }));
        assert_eq!(split(b""), Err(WireError::Short { len: 0 }));
        assert_eq!(split(b"x"), Err(WireError::Magic { first: b'x' }));
        assert!(
            split(b"{\"a\":1}")
                .expect_err("json")
                .to_string()
                .contains("first byte 0x7b, expected the magic byte 0x00")
        );
    }

    #[test]
    fn message_indexes_round_trip() {
        for indexes in [vec![0], vec![1], vec![2, 0], vec![0, 3, 1], vec![300]] {
            let mut bytes = encode_message_indexes(&indexes);
            bytes.extend_from_slice(b"msg");
            assert_eq!(
                message_indexes(&bytes),
                Ok((indexes.clone(), &b"msg"[..])),
                "{indexes:?}"
            );
        }
        // Confluent's encoding: count 1, index 2 is zigzag 2, 4.
        assert_eq!(encode_message_indexes(&[2]), vec![2, 4]);
        assert_eq!(message_indexes(&[0, 9]), Ok((vec![0], &[9u8][..])));
    }

    #[test]
    fn corrupt_message_indexes_are_refused() {
        assert!(message_indexes(&[]).is_err(), "empty");
        assert!(message_indexes(&[0x80]).is_err(), "truncated varint");
        assert!(message_indexes(&[1]).is_err(), "negative count");
        assert!(message_indexes(&[200, 1]).is_err(), "too many");
        assert!(message_indexes(&[2]).is_err(), "count without its index");
        assert!(message_indexes(&[2, 1]).is_err(), "negative index");
    }
}
