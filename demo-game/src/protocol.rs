//! What travels between the game's client and server: the channel layout and the messages.
//!
//! | direction | channel | kind | carries |
//! |---|---|---|---|
//! | server → client | [`SNAPSHOTS`] (0) | unreliable | delta snapshots of the world ([`crate::entity`]) |
//! | server → client | [`SERVER_EVENTS`] (1) | reliable ordered | [`ServerMessage`]: welcome, scoreboard, chat |
//! | client → server | [`INPUTS`] (0) | unreliable | [`InputPacket`]: the last inputs, redundantly, and the snapshot ack |
//! | client → server | [`CLIENT_EVENTS`] (1) | reliable ordered | [`ClientMessage`]: hello, chat |
//!
//! Snapshots go unreliable rather than sequenced: a snapshot the client decodes becomes a
//! baseline only once the client says so ([`InputPacket::ack`]), so a late one is still useful.
//! Every message is a postcard encoding ([`tickwire::typed`]); a message that does not decode
//! is dropped and counted, never trusted.

use serde::{Deserialize, Serialize};
use tickwire::{ChannelConfig, ChannelId, ChannelKind, ChannelLayout, Config};

use crate::world::Input;

/// Server → client: snapshots.
pub const SNAPSHOTS: ChannelId = ChannelId(0);
/// Server → client: [`ServerMessage`]s.
pub const SERVER_EVENTS: ChannelId = ChannelId(1);
/// Client → server: [`InputPacket`]s.
pub const INPUTS: ChannelId = ChannelId(0);
/// Client → server: [`ClientMessage`]s.
pub const CLIENT_EVENTS: ChannelId = ChannelId(1);

/// The game's protocol id: a server of another application refuses the handshake.
pub const PROTOCOL_ID: u64 = 0x5457_4152_454e_4131; // "TWARENA1"

/// Inputs repeated in each [`InputPacket`]: a packet may be lost and the next one still carries
/// its inputs. At 60 Hz, 8 inputs cover 133 ms of consecutive losses.
pub const INPUT_REDUNDANCY: usize = 8;
/// Most inputs one packet may carry; more is a malformed packet.
pub const MAX_INPUTS_PER_PACKET: usize = 32;
/// Longest player name, in characters; longer ones are cut.
pub const MAX_NAME_CHARS: usize = 16;
/// Longest chat line, in characters; longer ones are cut.
pub const MAX_CHAT_CHARS: usize = 120;
/// Lines in a scoreboard.
pub const SCOREBOARD_LINES: usize = 10;
/// Largest message a client may send, bytes: enough for a chat line or a full input packet.
pub const MAX_CLIENT_MESSAGE: usize = 1024;

/// Client → server, every tick: the inputs for the newest ticks and the newest snapshot decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPacket {
    /// The newest snapshot the client decoded (0: none yet); the server uses it as the next
    /// baseline.
    pub ack: u64,
    /// The tick the last input in `inputs` applies to.
    pub newest_tick: u64,
    /// Inputs for consecutive ticks ending at `newest_tick`, oldest first.
    pub inputs: Vec<Input>,
}

impl InputPacket {
    /// Each input with the tick it applies to, oldest first.
    pub fn stamped(&self) -> impl Iterator<Item = (u64, Input)> + '_ {
        let first = self
            .newest_tick
            .saturating_sub(self.inputs.len().saturating_sub(1) as u64);
        // Saturating, never a `first..` range: a hostile `newest_tick` near `u64::MAX` must not
        // overflow.
        self.inputs
            .iter()
            .enumerate()
            .map(move |(i, input)| (first.saturating_add(i as u64), *input))
    }
}

/// Client → server, reliable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message: who is playing. The server answers with [`ServerMessage::Welcome`].
    Hello {
        /// The player's name (cut to [`MAX_NAME_CHARS`]).
        name: String,
    },
    /// A chat line for everyone.
    Chat {
        /// The text (cut to [`MAX_CHAT_CHARS`]).
        text: String,
    },
}

/// Server → client, reliable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to [`ClientMessage::Hello`]: the player's entity and the server's rates.
    Welcome {
        /// The entity id of this client's player in snapshots.
        player: u32,
        /// Simulation ticks per second.
        tick_hz: u32,
        /// Snapshots per second.
        snapshot_hz: u32,
    },
    /// The leaders and this client's own line, sent when a score or the roster changes (at
    /// most a few times a second). Only the top [`SCOREBOARD_LINES`] are listed, so the
    /// message stays small however many play (a full list to every player would grow with the
    /// square of the player count).
    Scoreboard {
        /// The top players, by descending score.
        entries: Vec<ScoreEntry>,
        /// This client's own line and its rank (1 = first), if it plays.
        you: Option<(u32, ScoreEntry)>,
        /// Players in the game.
        players: u32,
    },
    /// A chat line or a game notice (`from` is empty for notices).
    Chat {
        /// Who wrote it; empty for the server's own notices.
        from: String,
        /// The text.
        text: String,
    },
}

/// One line of the scoreboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreEntry {
    /// The player's entity id.
    pub player: u32,
    /// Its name.
    pub name: String,
    /// Its score.
    pub score: u32,
}

/// The channel layout both sides use.
pub fn channel_layout() -> ChannelLayout {
    let reliable = |max| ChannelConfig {
        max_message_size: max,
        ..ChannelConfig::new(ChannelKind::ReliableOrdered)
    };
    let unreliable = |max| ChannelConfig {
        max_message_size: max,
        ..ChannelConfig::new(ChannelKind::Unreliable)
    };
    ChannelLayout {
        client_to_server: vec![unreliable(MAX_CLIENT_MESSAGE), reliable(MAX_CLIENT_MESSAGE)],
        server_to_client: vec![unreliable(64 * 1024), reliable(64 * 1024)],
    }
}

/// The endpoint configuration of the game (protocol id and channels) on top of `base`.
pub fn endpoint_config(base: Config) -> Config {
    Config {
        protocol_id: PROTOCOL_ID,
        channels: channel_layout(),
        ..base
    }
}

/// `text` cut to at most `max` characters.
pub fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_inputs_end_at_the_newest_tick() {
        let packet = InputPacket {
            ack: 3,
            newest_tick: 10,
            inputs: vec![Input::NONE, Input::from_bits(1), Input::from_bits(2)],
        };
        let ticks: Vec<u64> = packet.stamped().map(|(t, _)| t).collect();
        assert_eq!(ticks, vec![8, 9, 10]);
        let bytes = tickwire::typed::encode(&packet).unwrap();
        assert_eq!(
            tickwire::typed::decode::<InputPacket>(&bytes).unwrap(),
            packet
        );
        // 8 redundant inputs stay a small datagram.
        let full = InputPacket {
            ack: 100_000,
            newest_tick: 1_000_000,
            inputs: vec![Input::from_bits(5); INPUT_REDUNDANCY],
        };
        assert!(tickwire::typed::encode(&full).unwrap().len() < 24);
        // A hostile tick at the top of the range does not overflow.
        let hostile = InputPacket {
            ack: u64::MAX,
            newest_tick: u64::MAX,
            inputs: vec![Input::NONE; MAX_INPUTS_PER_PACKET],
        };
        assert_eq!(hostile.stamped().last().map(|(t, _)| t), Some(u64::MAX));
    }

    #[test]
    fn the_layout_validates() {
        tickwire::DriverConfig {
            endpoint: endpoint_config(Config::server()),
            ..tickwire::DriverConfig::server()
        }
        .validate()
        .unwrap();
    }
}
