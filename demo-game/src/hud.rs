//! The HUD: the network as this client sees it (RTT, loss, kbps each way with sparklines of the
//! last seconds, snapshot age, interpolation delay, transport, the bad-network toggle) and the
//! prediction's corrections.

use std::time::Instant;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use ratatui::Frame;

use crate::client::GameClient;

/// Rows the HUD takes.
pub const HUD_HEIGHT: u16 = 5;

/// The figures the HUD shows, taken from a client at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HudFigures {
    /// Smoothed RTT, ms.
    pub rtt_ms: f64,
    /// Loss estimate, percent.
    pub loss_pct: f64,
    /// kbps received at the last sample.
    pub down_kbps: u64,
    /// kbps sent at the last sample.
    pub up_kbps: u64,
    /// kbps received, last seconds.
    pub down_series: Vec<u64>,
    /// kbps sent, last seconds.
    pub up_series: Vec<u64>,
    /// Time since the newest snapshot, ms.
    pub snapshot_age_ms: Option<f64>,
    /// Interpolation delay, ms.
    pub interpolation_ms: f64,
    /// Prediction corrections so far.
    pub corrections: u64,
    /// Whether the simulated bad network is on.
    pub bad_network: bool,
    /// The transport.
    pub transport: &'static str,
}

impl HudFigures {
    /// The figures of `client` at `now`.
    pub fn of(client: &GameClient, now: Instant) -> Self {
        let meter = client.meter();
        Self {
            rtt_ms: meter.rtt.as_secs_f64() * 1e3,
            loss_pct: meter.loss * 100.0,
            down_kbps: meter.down_kbps.back().copied().unwrap_or(0),
            up_kbps: meter.up_kbps.back().copied().unwrap_or(0),
            down_series: meter.down_kbps.iter().copied().collect(),
            up_series: meter.up_kbps.iter().copied().collect(),
            snapshot_age_ms: client.snapshot_age(now).map(|age| age.as_secs_f64() * 1e3),
            interpolation_ms: client.interpolation_delay().as_secs_f64() * 1e3,
            corrections: client.prediction().0,
            bad_network: client.bad_network(),
            transport: client.transport().name(),
        }
    }
}

/// Draws the HUD into `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, hud: &HudFigures) {
    let [text, sparks] = Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(area);
    let label = Style::default().fg(Color::DarkGray);
    let value = Style::default()
        .fg(Color::White)
        .add_modifier(Modifier::BOLD);
    let age = hud
        .snapshot_age_ms
        .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0} ms"));
    let first = Line::from(vec![
        Span::styled("RTT ", label),
        Span::styled(format!("{:.1} ms", hud.rtt_ms), value),
        Span::styled("  loss ", label),
        Span::styled(format!("{:.1} %", hud.loss_pct), value),
        Span::styled("  down ", label),
        Span::styled(format!("{} kbps", hud.down_kbps), value),
        Span::styled("  up ", label),
        Span::styled(format!("{} kbps", hud.up_kbps), value),
        Span::styled("  snapshot age ", label),
        Span::styled(age, value),
        Span::styled("  interp ", label),
        Span::styled(format!("{:.0} ms", hud.interpolation_ms), value),
    ]);
    let network = if hud.bad_network {
        Span::styled(
            "ON (100 ms ±20, 10 % loss)",
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::styled("off", value)
    };
    let second = Line::from(vec![
        Span::styled("transport ", label),
        Span::styled(hud.transport, value),
        Span::styled("  corrections ", label),
        Span::styled(hud.corrections.to_string(), value),
        Span::styled("  bad network [n]: ", label),
        network,
    ]);
    frame.render_widget(Paragraph::new(vec![first, second]), text);
    let [down, up] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(sparks);
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title("kbps down (last 15 s)"))
            .style(Style::default().fg(Color::Cyan))
            .data(&hud.down_series),
        down,
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title("kbps up (last 15 s)"))
            .style(Style::default().fg(Color::Magenta))
            .data(&hud.up_series),
        up,
    );
}
