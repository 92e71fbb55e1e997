//! The messages between sensors and the hub, and the channels they travel on.
//!
//! Every message is a serde value encoded with postcard ([`tickwire::typed`]). Sensors send
//! [`Uplink`] messages, the hub sends [`Downlink`] messages; which channel a message takes is a
//! delivery decision, so one enum per direction covers every channel.
//!
//! | channel | kind | carries |
//! |---|---|---|
//! | [`READINGS`] (0) | unreliable, with delivery notices | [`Uplink::Readings`], clock pings and replies |
//! | [`CONTROL`] (2) | reliable, ordered | [`Uplink::Hello`], [`Uplink::CommandAck`], [`Uplink::Sleeping`]; [`Downlink::Command`], [`Downlink::Welcome`] |
//! | [`ALERTS`] (3) | reliable, unordered | [`Uplink::Alert`], [`Downlink::AlertStored`] |
//!
//! Readings are unreliable so that a lost datagram never delays fresher ones, but the sensor
//! learns the fate of each batch (`notify_delivery`) and puts the readings of a lost batch back
//! into its backlog, so they are sent again; the hub drops duplicates by `(sensor, seq)`.
//!
//! Over QUIC the engine reports no delivery of unreliable messages (quinn acknowledges no
//! single DATAGRAM frame), so a lost batch would be neither noticed nor resent. There, the
//! sensor sends its readings on the reliable [`ALERTS`] channel (a QUIC stream that quinn
//! retransmits) and keeps the batches of the last 10 s to send again if the connection is
//! lost; the hub reads a message the same on any channel. The QUIC connection already has
//! congestion control and TLS, and a stream delays fresh readings behind lost ones only by
//! a retransmission, which a sensor reporting every 100 ms tolerates.
//!
//! In secure mode (native only) each sensor presents a connect token whose client id is its
//! sensor id; the hub refuses a [`Uplink::Hello`] that names another sensor and closes the
//! session with [`CODE_WRONG_SENSOR`](crate::hub::CODE_WRONG_SENSOR).

use serde::{Deserialize, Serialize};
use tickwire::{ChannelConfig, ChannelId, ChannelKind, ChannelLayout, Config, DriverConfig};

/// Readings, and clock sync pings and replies (unreliable, with delivery notices).
pub const READINGS: ChannelId = ChannelId(0);
/// Session control and commands (reliable, ordered).
pub const CONTROL: ChannelId = ChannelId(2);
/// Alerts and their confirmations (reliable, unordered).
pub const ALERTS: ChannelId = ChannelId(3);

/// Most readings in one [`Uplink::Readings`] message, so that a batch fits one datagram.
pub const MAX_BATCH: usize = 40;

/// Longest either side holds an acknowledgement back (both sides must agree: each adds it to
/// its retransmission timeout). A sensor at 10 Hz sends a datagram every 100 ms; holding acks
/// 1 s with [`ACK_FREQUENCY`] 10 lets one acknowledgement cover ten of them, which cuts the
/// hub's sends (`sendmsg` is its largest cost per reading after SQLite) and the sensors'
/// receives to a tenth of the datagrams (hub CPU 0.84x against 250 ms and 3, at 7,000
/// sensors: BENCHMARKS.md). Readings are unreliable, so this delays only the sensor learning that a
/// batch was lost, not the readings themselves; a lost alert is sent again up to 1 s later
/// than with immediate acks. A sensor that waits only for acknowledgements (to sleep, or at
/// the end of the run) asks for them at once with `request_ack`, so wakes stay short.
pub const MAX_ACK_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Packets that need an acknowledgement before one is sent at once (engine default 2).
pub const ACK_FREQUENCY: u32 = 10;

/// The application's protocol id, checked in the Tickwire handshake ("SENSORSI").
pub const PROTOCOL_ID: u64 = 0x5345_4e53_4f52_5349;

/// A sensor's message to the hub.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Uplink {
    /// First message of every session: who the sensor is. The hub knows sensors by id, not by
    /// address, so a sensor that reconnects from a new port is the same sensor.
    Hello(Hello),
    /// Readings, oldest first (live ones, or a backlog sent again).
    Readings(ReadingBatch),
    /// A threshold crossing, kept in the sensor's outbox until [`Downlink::AlertStored`].
    Alert(Alert),
    /// The answer to [`Downlink::TimeRequest`].
    TimeReply(TimeReply),
    /// A [`Downlink::Command`] was applied.
    CommandAck {
        /// The command's id.
        command_id: u64,
    },
    /// The sensor is going to sleep and will wake again in about this long.
    Sleeping {
        /// Milliseconds until the next wake.
        wake_in_ms: u64,
    },
}

/// A sensor introduces itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The sensor's stable id.
    pub sensor_id: u32,
    /// What it measures.
    pub kind: SensorKind,
    /// Whether it sleeps between wakes.
    pub sleepy: bool,
    /// Its sampling rate, in thousandths of a hertz.
    pub rate_millihz: u32,
    /// For sleepy sensors: how long it sleeps between wakes, in milliseconds.
    pub wake_interval_ms: u64,
    /// Its own clock when it sent this, in microseconds since the Unix epoch (device time).
    pub device_time_us: i64,
    /// Battery charge in percent.
    pub battery_pct: f32,
}

/// Readings of one sensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadingBatch {
    /// Battery charge in percent when sent.
    pub battery_pct: f32,
    /// The readings, at most [`MAX_BATCH`].
    pub readings: Vec<Reading>,
}

/// One sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The sensor's sequence number: 0, 1, 2, ... for every sample it takes.
    pub seq: u64,
    /// When it was taken, by the sensor's clock, in microseconds since the Unix epoch.
    pub device_ts_us: i64,
    /// The measured value, in the kind's unit.
    pub value: f32,
}

/// A threshold crossing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per sensor: 1, 2, 3, ...
    pub alert_id: u64,
    /// The reading that crossed the threshold.
    pub reading: Reading,
    /// The threshold crossed.
    pub threshold: f32,
}

/// A sensor's answer to a clock ping (NTP-style: four timestamps give the offset and the RTT).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeReply {
    /// The ping's id.
    pub ping_id: u32,
    /// The hub's clock when it sent the ping (copied back), microseconds since the Unix epoch.
    pub hub_sent_us: i64,
    /// The sensor's clock when the ping arrived.
    pub device_received_us: i64,
    /// The sensor's clock when it sent this reply.
    pub device_sent_us: i64,
}

/// The hub's message to a sensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Downlink {
    /// The answer to [`Uplink::Hello`], sent after every command held for the sensor (on the
    /// same ordered channel): once a sensor has it, it has every pending command.
    Welcome {
        /// How many commands were pending and sent just before.
        pending_commands: u32,
    },
    /// The alert is committed to the database: the sensor may forget it.
    AlertStored {
        /// The alert's id.
        alert_id: u64,
    },
    /// Something to change, sent reliably and held by the hub until the sensor is awake.
    Command {
        /// Unique per hub run; the sensor applies each id once.
        command_id: u64,
        /// What to change.
        command: Command,
    },
    /// A clock ping.
    TimeRequest {
        /// The ping's id.
        ping_id: u32,
        /// The hub's clock when it sent this, microseconds since the Unix epoch.
        hub_sent_us: i64,
    },
}

/// A change the hub asks of a sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sample at this rate, in thousandths of a hertz.
    SetRate {
        /// The new rate in millihertz.
        rate_millihz: u32,
    },
    /// Sleepy sensors: sleep this long between wakes.
    SetSleepInterval {
        /// The new interval in milliseconds.
        interval_ms: u64,
    },
}

/// What a sensor measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SensorKind {
    /// Air temperature in °C: a daily cycle plus noise; alerts above 35 °C.
    Temperature,
    /// Relative humidity in %: slow drift plus noise; alerts above 90 %.
    Humidity,
    /// Vibration RMS in mm/s: low noise with bursts; alerts above 8 mm/s.
    Vibration,
    /// Air pressure in hPa: weather-like drift; alerts below 980 hPa.
    Pressure,
}

impl SensorKind {
    /// Every kind, in a fixed order.
    pub const ALL: [SensorKind; 4] = [
        SensorKind::Temperature,
        SensorKind::Humidity,
        SensorKind::Vibration,
        SensorKind::Pressure,
    ];

    /// A lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::Humidity => "humidity",
            Self::Vibration => "vibration",
            Self::Pressure => "pressure",
        }
    }
}

/// The channel layout both sides use: the engine's default four channels, with delivery
/// notices on the sensors' readings channel.
pub fn channel_layout() -> ChannelLayout {
    let mut layout = ChannelLayout::default();
    layout.client_to_server[usize::from(READINGS.0)] = ChannelConfig {
        notify_delivery: true,
        ..ChannelConfig::new(ChannelKind::Unreliable)
    };
    layout
}

/// The hub's driver configuration: room for many sensors, sensor-sim's protocol id and layout,
/// acknowledgements held back up to [`MAX_ACK_DELAY`], and large socket buffers.
pub fn hub_config() -> DriverConfig {
    let mut config = DriverConfig::server();
    config.endpoint = Config {
        protocol_id: PROTOCOL_ID,
        channels: channel_layout(),
        max_connections: 100_000,
        idle_timeout: std::time::Duration::from_secs(5),
        max_ack_delay: MAX_ACK_DELAY,
        ack_frequency: ACK_FREQUENCY,
        ..Config::server()
    };
    config.socket_buffer_bytes = HUB_SOCKET_BUFFER;
    config
}

/// The hub's socket buffers: 100,000 readings/s fill 8 MiB of receive buffer in about 80 ms, so
/// a hub off the CPU that long (its machine busy) drops datagrams, and each dropped reading waits
/// up to [`MAX_ACK_DELAY`] to be reported lost and sent again. 32 MiB rides out about 300 ms.
/// The kernel grants it past `net.core.rmem_max` only to a privileged hub; raise the sysctl
/// otherwise.
pub const HUB_SOCKET_BUFFER: usize = 32 * 1024 * 1024;

/// A sensor's driver configuration: notices a vanished hub within 3 s, gives up a connection
/// attempt after 2 s, and asks for modest socket buffers (thousands of sensors share a machine).
pub fn sensor_config() -> DriverConfig {
    let mut config = DriverConfig::client();
    config.endpoint = Config {
        protocol_id: PROTOCOL_ID,
        channels: channel_layout(),
        idle_timeout: std::time::Duration::from_secs(3),
        ack_timeout: std::time::Duration::from_secs(5),
        handshake_timeout: std::time::Duration::from_secs(2),
        max_ack_delay: MAX_ACK_DELAY,
        ack_frequency: ACK_FREQUENCY,
        ..Config::client()
    };
    config.socket_buffer_bytes = 256 * 1024;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_fits_one_datagram() {
        let readings = (0..MAX_BATCH as u64)
            .map(|seq| Reading {
                seq: u64::from(u32::MAX) + seq,
                device_ts_us: 1_800_000_000_000_000 + seq as i64,
                value: -1234.5,
            })
            .collect();
        let batch = Uplink::Readings(ReadingBatch {
            battery_pct: 55.5,
            readings,
        });
        let bytes = tickwire::typed::encode(&batch).unwrap();
        assert!(bytes.len() < 1100, "{} bytes", bytes.len());
        assert_eq!(tickwire::typed::decode::<Uplink>(&bytes).unwrap(), batch);
    }

    #[test]
    fn configs_are_valid() {
        hub_config().validate().unwrap();
        sensor_config().validate().unwrap();
    }
}
