//! Property tests of the byte layouts: the decoders never panic and return a [`DecodeError`] for
//! anything malformed, encodings round-trip, and every truncation of a valid encoding decodes to
//! an error or to a valid prefix of what was encoded.
//!
//! The runs are seeded, so a failure replays identically; nothing is persisted to disk.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::frame::MAX_FRAGMENT_COUNT;
use super::*;
use crate::config::ChannelKind;
use crate::cookie::{Cookie, COOKIE_LEN};

/// A frame to write, with the payload it owns.
#[derive(Clone, Debug)]
enum Spec {
    Message {
        channel: u8,
        id: u16,
        payload: Vec<u8>,
    },
    Fragment {
        channel: u8,
        id: u16,
        index: u32,
        count: u32,
        payload: Vec<u8>,
    },
    Ping,
    AckRequest,
    Ack {
        largest: u16,
        bits: u32,
    },
}

proptest! {
    #![proptest_config(config(2_000, 0x7769_7265))]

    // ---- random bytes never panic ----

    #[test]
    fn handshake_decode_never_panics(bytes in datagram()) {
        if let Ok(packet) = Handshake::decode(&bytes) {
            // Whatever decoded encodes and decodes back to itself.
            let mut buf = [0u8; 2 * REQUEST_MIN_SIZE];
            let len = packet.encode(&mut buf).expect("a decoded packet fits");
            prop_assert_eq!(Handshake::decode(&buf[..len]), Ok(packet));
            prop_assert_eq!(PacketKind::of(&bytes).ok(), PacketKind::of(&buf[..len]).ok());
        }
    }

    #[test]
    fn data_header_decode_never_panics(bytes in datagram()) {
        if let Ok((header, offset)) = DataHeader::decode(&bytes) {
            prop_assert!(offset <= bytes.len());
            prop_assert!((3..=1 + 2 + 6 + 10).contains(&offset));
            let mut buf = [0u8; 32];
            let mut writer = Writer::new(&mut buf);
            header.encode(&mut writer).expect("a header fits in 32 bytes");
            let len = writer.position();
            prop_assert_eq!(DataHeader::decode(&buf[..len]), Ok((header, len)));
        }
    }

    #[test]
    fn frame_reader_never_panics(
        bytes in datagram(),
        kinds in kinds(),
        offset in 0usize..8,
    ) {
        check_frames_are_sane(&bytes, offset, &kinds)?;
    }

    #[test]
    fn frame_reader_never_panics_on_frame_like_bytes(
        bytes in frame_like(),
        kinds in kinds(),
    ) {
        check_frames_are_sane(&bytes, 0, &kinds)?;
    }

    #[test]
    fn reader_varint_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut reader = Reader::new(&bytes);
        match reader.varint() {
            Ok(value) => {
                prop_assert!(reader.position() <= 10);
                prop_assert!(reader.position() >= varint_len(value));
            }
            Err(error) => prop_assert!(matches!(
                error,
                DecodeError::Truncated | DecodeError::VarintOverflow
            )),
        }
    }

    // ---- round trips ----

    #[test]
    fn data_header_round_trips(header in data_header(), trailing in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut buf = [0u8; 64];
        let mut writer = Writer::new(&mut buf);
        header.encode(&mut writer).unwrap();
        let len = writer.position();
        prop_assert_eq!(DataHeader::decode(&buf[..len]), Ok((header, len)));
        // Frames follow the header: trailing bytes do not change it.
        buf[len..len + trailing.len()].copy_from_slice(&trailing);
        prop_assert_eq!(DataHeader::decode(&buf[..len + trailing.len()]), Ok((header, len)));
        for cut in 0..len {
            prop_assert!(DataHeader::decode(&buf[..cut]).is_err(), "cut at {}", cut);
        }
    }

    #[test]
    fn handshakes_round_trip(packet in handshake()) {
        let mut buf = [0u8; 2 * REQUEST_MIN_SIZE];
        let len = packet.encode(&mut buf).unwrap();
        prop_assert_eq!(Handshake::decode(&buf[..len]), Ok(packet));
        for cut in 0..len {
            prop_assert!(Handshake::decode(&buf[..cut]).is_err(), "cut at {}", cut);
        }
        if !matches!(packet, Handshake::Request(_)) {
            // Fixed-size packets refuse trailing bytes; requests are padded and accept them.
            prop_assert_eq!(
                Handshake::decode(&buf[..len + 1]),
                Err(DecodeError::TrailingBytes)
            );
        }
    }

    #[test]
    fn frames_round_trip_and_truncate_to_prefixes(
        (kinds, specs) in kinds_and_frames(),
        header in data_header(),
    ) {
        let (buf, offset) = encode(&header, &kinds, &specs);
        prop_assert_eq!(DataHeader::decode(&buf), Ok((header, offset)));
        let full: Vec<Frame> = FrameReader::new(&buf, offset, &kinds)
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("valid frames failed: {e}")))?;
        prop_assert_eq!(full.len(), specs.len());
        for (frame, spec) in full.iter().zip(&specs) {
            prop_assert!(same(frame, spec, &buf), "{:?} decoded as {:?}", spec, frame);
        }

        for cut in 0..buf.len() {
            let prefix = &buf[..cut];
            if cut < offset {
                prop_assert!(DataHeader::decode(prefix).is_err());
                continue;
            }
            prop_assert_eq!(DataHeader::decode(prefix), Ok((header, offset)));
            let decoded: Vec<Result<Frame, DecodeError>> =
                FrameReader::new(prefix, offset, &kinds).collect();
            prop_assert!(decoded.len() <= full.len(), "cut at {}: more frames than encoded", cut);
            for (i, result) in decoded.iter().enumerate() {
                let last = i + 1 == decoded.len();
                match result {
                    Ok(frame) if *frame == full[i] => {}
                    Ok(frame) => {
                        // Only the frame running to the end of the datagram can come out
                        // shorter, and then only its payload.
                        prop_assert!(last, "cut at {}: frame {} changed: {:?}", cut, i, frame);
                        prop_assert!(
                            is_shortened(frame, &full[i], cut),
                            "cut at {}: {:?} is not a prefix of {:?}", cut, frame, full[i]
                        );
                    }
                    Err(_) => prop_assert!(last, "cut at {}: frames after an error", cut),
                }
            }
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        (kinds, specs) in kinds_and_frames(),
        header in data_header(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (mut buf, offset) = encode(&header, &kinds, &specs);
        for (at, byte) in mutations {
            let at = at.index(buf.len());
            buf[at] = byte;
        }
        let _ = DataHeader::decode(&buf);
        let _ = Handshake::decode(&buf);
        check_frames_are_sane(&buf, offset, &kinds)?;
    }
}

#[test]
fn fragment_counts_out_of_range_are_refused() {
    let kinds = [ChannelKind::ReliableOrdered];
    let fragment = |index: u64, count: u64| {
        let mut buf = [0u8; 64];
        let mut writer = Writer::new(&mut buf);
        writer.u8(0x40 | 0x20).unwrap(); // fragment, explicit length, channel 0
        writer.u16(1).unwrap();
        writer.varint(index).unwrap();
        writer.varint(count).unwrap();
        writer.varint(2).unwrap();
        writer.put(b"ab").unwrap();
        let len = writer.position();
        FrameReader::new(&buf[..len], 0, &kinds).next()
    };
    for (index, count) in [
        (0, 0),
        (5, 5),
        (6, 5),
        (0, MAX_FRAGMENT_COUNT + 1),
        (0, 1 << 40),
        (1 << 40, 1 << 41),
        (u64::MAX - 1, u64::MAX),
    ] {
        assert_eq!(
            fragment(index, count),
            Some(Err(DecodeError::InvalidFragment)),
            "index {index}, count {count}"
        );
    }
    assert!(matches!(
        fragment(MAX_FRAGMENT_COUNT - 1, MAX_FRAGMENT_COUNT),
        Some(Ok(Frame::Fragment { count, .. })) if u64::from(count) == MAX_FRAGMENT_COUNT
    ));
}

#[test]
fn absurd_lengths_and_unterminated_varints_are_refused() {
    let kinds = [ChannelKind::Unreliable, ChannelKind::ReliableOrdered];
    let cases: [(&[u8], DecodeError); 7] = [
        // Message with a length of 2^62 and 1 byte of payload.
        (
            &[
                0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1,
            ],
            DecodeError::LengthOverrun,
        ),
        // Length varint that never ends.
        (&[0x20, 0xff, 0xff], DecodeError::Truncated),
        // Length varint of 11 bytes.
        (
            &[
                0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            DecodeError::VarintOverflow,
        ),
        // Reliable message: id cut short.
        (&[0x21, 0x00], DecodeError::Truncated),
        // Escaped channel with the channel byte missing, then naming channel 200.
        (&[0x1f], DecodeError::Truncated),
        (&[0x1f, 200, 0, 0], DecodeError::UnknownChannel(200)),
        // Ack frame cut short.
        (&[0x81, 0, 1, 0], DecodeError::Truncated),
    ];
    for (bytes, error) in cases {
        assert_eq!(
            FrameReader::new(bytes, 0, &kinds).last(),
            Some(Err(error)),
            "{bytes:x?}"
        );
    }
    // Delay varint running past the end of the header.
    assert_eq!(
        DataHeader::decode(&[0x18, 0, 1, 0, 1, 0, 0, 0, 0, 0x80]),
        Err(DecodeError::Truncated)
    );
    // An offset past the end reads no frames.
    assert_eq!(FrameReader::new(&[0x00], 5, &kinds).count(), 0);
}

// ---- checks ----

/// Decodes frames from arbitrary bytes and checks what any decoder output must satisfy.
fn check_frames_are_sane(
    bytes: &[u8],
    offset: usize,
    kinds: &[ChannelKind],
) -> Result<(), TestCaseError> {
    let results: Vec<Result<Frame, DecodeError>> = FrameReader::new(bytes, offset, kinds).collect();
    // Every frame takes at least one byte.
    prop_assert!(results.len() <= bytes.len().saturating_sub(offset));
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(Frame::Message {
                channel, payload, ..
            })
            | Ok(Frame::Fragment {
                channel, payload, ..
            }) => {
                prop_assert!(usize::from(*channel) < kinds.len());
                prop_assert!(payload.start > offset, "payload inside the frame header");
                prop_assert!(payload.start <= payload.end && payload.end <= bytes.len());
                if let Ok(Frame::Fragment { index, count, .. }) = result {
                    prop_assert!(index < count && u64::from(*count) <= MAX_FRAGMENT_COUNT);
                }
            }
            Ok(Frame::Control(_) | Frame::Ack { .. }) => {}
            Ok(Frame::PathChallenge(_) | Frame::PathResponse(_)) => {}
            Err(_) => prop_assert_eq!(i + 1, results.len(), "frames after an error"),
        }
    }
    Ok(())
}

/// Whether a decoded frame is what `spec` wrote.
fn same(frame: &Frame, spec: &Spec, buf: &[u8]) -> bool {
    match (frame, spec) {
        (
            Frame::Message {
                channel,
                id,
                payload,
            },
            Spec::Message {
                channel: c,
                id: i,
                payload: p,
            },
        ) => channel == c && id == i && buf[payload.clone()] == p[..],
        (
            Frame::Fragment {
                channel,
                id,
                index,
                count,
                payload,
            },
            Spec::Fragment {
                channel: c,
                id: i,
                index: x,
                count: n,
                payload: p,
            },
        ) => channel == c && id == i && index == x && count == n && buf[payload.clone()] == p[..],
        (Frame::Control(ControlKind::Ping), Spec::Ping)
        | (Frame::Control(ControlKind::AckRequest), Spec::AckRequest) => true,
        (
            Frame::Ack { largest, bits },
            Spec::Ack {
                largest: l,
                bits: b,
            },
        ) => largest == l && bits == b,
        _ => false,
    }
}

/// Whether `short` is `full` with its payload cut at `cut`.
fn is_shortened(short: &Frame, full: &Frame, cut: usize) -> bool {
    match (short, full) {
        (
            Frame::Message {
                channel,
                id,
                payload,
            },
            Frame::Message {
                channel: c,
                id: i,
                payload: p,
            },
        ) => channel == c && id == i && payload.start == p.start && payload.end == cut,
        (
            Frame::Fragment {
                channel,
                id,
                index,
                count,
                payload,
            },
            Frame::Fragment {
                channel: c,
                id: i,
                index: x,
                count: n,
                payload: p,
            },
        ) => {
            channel == c
                && id == i
                && index == x
                && count == n
                && payload.start == p.start
                && payload.end == cut
        }
        _ => false,
    }
}

/// A data packet: `header`, then `specs` written with a [`FrameWriter`]. Returns the bytes and
/// the offset of the first frame.
fn encode(header: &DataHeader, kinds: &[ChannelKind], specs: &[Spec]) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 1 << 16];
    let mut writer = Writer::new(&mut buf);
    header.encode(&mut writer).unwrap();
    let offset = writer.position();
    let mut frames = FrameWriter::new();
    for spec in specs {
        match spec {
            Spec::Message {
                channel,
                id,
                payload,
            } => {
                let body = FrameBody::Message { id: *id, payload };
                let kind = kinds[usize::from(*channel)];
                frames.write(&mut writer, *channel, kind, &body).unwrap();
            }
            Spec::Fragment {
                channel,
                id,
                index,
                count,
                payload,
            } => {
                let body = FrameBody::Fragment {
                    id: *id,
                    index: *index,
                    count: *count,
                    payload,
                };
                let kind = kinds[usize::from(*channel)];
                frames.write(&mut writer, *channel, kind, &body).unwrap();
            }
            Spec::Ping => frames
                .write_control(&mut writer, ControlKind::Ping)
                .unwrap(),
            Spec::AckRequest => frames
                .write_control(&mut writer, ControlKind::AckRequest)
                .unwrap(),
            Spec::Ack { largest, bits } => frames.write_ack(&mut writer, *largest, *bits).unwrap(),
        }
    }
    frames.finish(&mut writer);
    let len = writer.position();
    buf.truncate(len);
    (buf, offset)
}

// ---- strategies ----

fn config(cases: u32, seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Arbitrary bytes, mostly short, sometimes request-sized.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..1_400),
    ]
}

/// Bytes made of plausible frame openings (valid types, low channels, short varints).
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (0u8..4, any::<bool>(), 0u8..6)
            .prop_map(|(kind, len, low)| vec![(kind << 6) | (if len { 0x20 } else { 0 }) | low]),
        Just(vec![0x1f]),
        any::<u8>().prop_map(|b| vec![b]),
        any::<u8>().prop_map(|b| vec![b & 0x7f]),
        Just(vec![0xff, 0xff, 0xff]),
        Just(vec![0x80]),
        Just(vec![0x81]),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn kind() -> impl Strategy<Value = ChannelKind> {
    prop::sample::select(vec![
        ChannelKind::Unreliable,
        ChannelKind::UnreliableSequenced,
        ChannelKind::ReliableOrdered,
        ChannelKind::ReliableUnordered,
    ])
}

/// Channel layouts, sometimes long enough for escaped channel numbers (31 and up).
fn kinds() -> impl Strategy<Value = Vec<ChannelKind>> {
    prop_oneof![
        3 => prop::collection::vec(kind(), 0..6),
        1 => prop::collection::vec(kind(), 30..40),
    ]
}

fn ack_header() -> impl Strategy<Value = AckHeader> {
    (
        any::<u16>(),
        any::<u32>(),
        prop_oneof![Just(0u64), 1u64..(1 << 21), any::<u64>()],
    )
        .prop_map(|(largest, bits, delay)| AckHeader {
            largest,
            bits,
            delay,
        })
}

fn data_header() -> impl Strategy<Value = DataHeader> {
    (any::<u16>(), prop::option::of(ack_header())).prop_map(|(packet_number, ack)| DataHeader {
        packet_number,
        session: None,
        ack,
    })
}

fn handshake() -> impl Strategy<Value = Handshake> {
    let request = (any::<u16>(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
        |(version, protocol_id, fingerprint, nonce)| ConnectRequest {
            version,
            protocol_id,
            fingerprint,
            nonce,
        },
    );
    let cookie = prop::array::uniform24(any::<u8>()).prop_map(Cookie);
    prop_oneof![
        request.clone().prop_map(Handshake::Request),
        (any::<u64>(), cookie.clone())
            .prop_map(|(nonce, cookie)| Handshake::Challenge(Challenge { nonce, cookie })),
        (request, cookie)
            .prop_map(|(request, cookie)| Handshake::Response(ConnectResponse { request, cookie })),
        any::<u64>().prop_map(|nonce| Handshake::Accept { nonce }),
        (any::<u64>(), any::<u8>())
            .prop_map(|(nonce, reason)| Handshake::Reject(Reject { nonce, reason })),
        (any::<u64>(), any::<u16>())
            .prop_map(|(token, code)| Handshake::Disconnect(Disconnect { token, code })),
        Just(Handshake::NoSession),
    ]
}

/// A layout and frames valid for it.
fn kinds_and_frames() -> impl Strategy<Value = (Vec<ChannelKind>, Vec<Spec>)> {
    prop_oneof![
        prop::collection::vec(kind(), 1..6),
        prop::collection::vec(kind(), 32..40),
    ]
    .prop_flat_map(|kinds| {
        let channels = kinds.len() as u8;
        let spec = frame_spec(kinds.clone(), channels);
        (Just(kinds), prop::collection::vec(spec, 0..8))
    })
}

fn frame_spec(kinds: Vec<ChannelKind>, channels: u8) -> impl Strategy<Value = Spec> {
    let payload = || {
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..16),
            1 => prop::collection::vec(any::<u8>(), 100..300),
        ]
    };
    let message = (0..channels, any::<u16>(), payload()).prop_map(move |(channel, id, payload)| {
        // Unreliable messages carry no id on the wire.
        let id = if kinds[usize::from(channel)] == ChannelKind::Unreliable {
            0
        } else {
            id
        };
        Spec::Message {
            channel,
            id,
            payload,
        }
    });
    let count = prop_oneof![
        1u32..8,
        Just(MAX_FRAGMENT_COUNT as u32),
        1u32..=MAX_FRAGMENT_COUNT as u32
    ];
    let fragment = (0..channels, any::<u16>(), count, any::<u32>(), payload()).prop_map(
        |(channel, id, count, index, payload)| Spec::Fragment {
            channel,
            id,
            index: index % count,
            count,
            payload,
        },
    );
    let ack = (any::<u16>(), any::<u32>()).prop_map(|(largest, bits)| Spec::Ack { largest, bits });
    prop_oneof![
        4 => message,
        3 => fragment,
        1 => Just(Spec::Ping),
        1 => Just(Spec::AckRequest),
        1 => ack,
    ]
}

#[test]
fn the_cookie_length_matches_the_response_layout() {
    // 1 kind byte + version, protocol id, fingerprint, nonce + cookie.
    let mut buf = [0u8; 64];
    let request = ConnectRequest {
        version: PROTOCOL_VERSION,
        protocol_id: 1,
        fingerprint: 2,
        nonce: 3,
    };
    let response = Handshake::Response(ConnectResponse {
        request,
        cookie: Cookie([9; COOKIE_LEN]),
    });
    assert_eq!(response.encode(&mut buf), Ok(1 + 22 + COOKIE_LEN));
}
