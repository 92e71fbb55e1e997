//! The hub's live terminal dashboard (ratatui): totals, ingest rate with a sparkline over the
//! last minute, loss, the worst sensors, stale sensors shown as stale.
//!
//! Drawing is a pure function of a [`Dashboard`] (a [`HubStatus`] plus where the hub listens
//! and stores), so it is tested on ratatui's `TestBackend`; the terminal loop lives in the
//! binary.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use crate::hub::{HubStatus, SensorStatus};

/// Everything the dashboard shows.
#[derive(Clone, Debug, Default)]
pub struct Dashboard {
    /// Where the hub listens, as shown in the title.
    pub listen: String,
    /// The database file, as shown in the title.
    pub database: String,
    /// The hub's state.
    pub status: HubStatus,
}

impl Dashboard {
    /// Draws the dashboard over the whole frame.
    pub fn render(&self, frame: &mut Frame<'_>) {
        let [title, top, table, stale, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(TOP_HEIGHT),
            Constraint::Min(4),
            Constraint::Length(3),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(self.title(), title);
        let [totals, ingest] =
            Layout::horizontal([Constraint::Length(46), Constraint::Min(20)]).areas(top);
        frame.render_widget(self.totals(), totals);
        self.render_ingest(frame, ingest);
        self.render_worst(frame, table);
        frame.render_widget(self.stale(), stale);
        frame.render_widget(
            Paragraph::new(
                "q or Esc: stop the hub (commits what is pending, prints the JSON summary)   \
                 queue commands: sensor-sim command --data-dir DIR --sensor ID set-rate HZ",
            )
            .style(Style::new().fg(Color::DarkGray)),
            footer,
        );
    }

    fn title(&self) -> Paragraph<'static> {
        let s = &self.status;
        Paragraph::new(Line::from(vec![
            Span::styled(
                " Tickwire sensor hub ",
                Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ),
            Span::raw(format!(
                "  udp {}  ·  {}  ·  up {}",
                self.listen,
                self.database,
                duration_text(s.uptime_s)
            )),
        ]))
    }

    fn totals(&self) -> Paragraph<'static> {
        let t = &self.status.totals;
        let disconnected = t.sensors.saturating_sub(t.awake + t.asleep + t.stale);
        let loss = loss_pct(t.readings_stored, t.gaps);
        let mut lines = vec![
            Line::from(vec![
                Span::raw(format!("sensors  {:>8}  ", t.sensors)),
                Span::styled(format!("{} awake", t.awake), Style::new().fg(Color::Green)),
                Span::raw(format!(
                    " ({} native, {} quic), ",
                    t.awake_native, t.awake_quic
                )),
                Span::styled(format!("{} asleep", t.asleep), Style::new().fg(Color::Cyan)),
            ]),
            Line::from(vec![
                Span::raw("                   "),
                Span::styled(
                    format!("{} stale", t.stale),
                    if t.stale > 0 {
                        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                    } else {
                        Style::new()
                    },
                ),
                Span::raw(format!(", {disconnected} just left")),
            ]),
            Line::raw(format!(
                "readings {:>8} stored, {} dup refused",
                count_text(t.readings_stored),
                count_text(t.duplicates)
            )),
            Line::from(vec![
                Span::raw(format!("loss     {:>8} missing = ", count_text(t.gaps))),
                Span::styled(format!("{loss:.3} %"), loss_style(loss)),
            ]),
            Line::raw(format!(
                "alerts   {:>8} stored, {} confirmed",
                count_text(t.alerts_stored),
                count_text(t.alerts_confirmed)
            )),
            Line::raw(format!(
                "commands {:>8} pending, {} acknowledged",
                t.commands_pending, t.commands_acked
            )),
            Line::raw(format!(
                "database {:>8} commits, slowest {:.1} ms",
                count_text(t.commits),
                t.commit_ms_max
            )),
        ];
        if t.db_errors > 0 {
            lines.push(Line::styled(
                format!(
                    "DB ERRORS {}: {}",
                    t.db_errors,
                    t.last_db_error.as_deref().unwrap_or("")
                ),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        } else if t.malformed > 0 || t.hellos_refused > 0 {
            lines.push(Line::raw(format!(
                "malformed messages {}, hellos refused {}",
                t.malformed, t.hellos_refused
            )));
        }
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" totals "))
    }

    fn render_ingest(&self, frame: &mut Frame<'_>, area: Rect) {
        let history = &self.status.ingest_per_s;
        let now = history.last().copied().unwrap_or(0);
        let peak = history.iter().copied().max().unwrap_or(0);
        let mean = if history.is_empty() {
            0
        } else {
            history.iter().sum::<u64>() / history.len() as u64
        };
        // Newest on the right: the last values that fit, blank bars before them.
        let width = usize::from(area.width.saturating_sub(2));
        let recent = &history[history.len().saturating_sub(width)..];
        let shown: Vec<Option<u64>> = std::iter::repeat_n(None, width - recent.len())
            .chain(recent.iter().copied().map(Some))
            .collect();
        let sparkline = Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(format!(
                " ingest {} readings/s  (mean {}, peak {}, last {} s) ",
                count_text(now),
                count_text(mean),
                count_text(peak),
                history.len()
            )))
            .data(shown)
            .style(Style::new().fg(Color::Yellow));
        frame.render_widget(sparkline, area);
    }

    fn render_worst(&self, frame: &mut Frame<'_>, area: Rect) {
        let rows_fit = usize::from(area.height.saturating_sub(3));
        let worst = worst_sensors(&self.status.sensors, rows_fit);
        let header = Row::new([
            "sensor",
            "kind",
            "state",
            "seen",
            "stored",
            "gaps",
            "loss %",
            "dup",
            "RTT ms",
            "clock ±ms",
            "offset ms",
            "drift ppm",
            "battery",
            "cmds",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD));
        let rows = worst.iter().map(|s| {
            let loss = loss_pct(s.readings_stored, s.gaps);
            Row::new([
                Cell::from(s.sensor_id.to_string()),
                Cell::from(s.kind.map_or("?", |k| k.name())),
                Cell::from(s.state).style(state_style(s.state)),
                Cell::from(s.last_seen_s.map_or("-".into(), duration_text)),
                Cell::from(count_text(s.readings_stored)),
                Cell::from(count_text(s.gaps)),
                Cell::from(format!("{loss:.2}")).style(loss_style(loss)),
                Cell::from(count_text(s.duplicates)),
                Cell::from(opt_text(s.rtt_ms, 1)),
                Cell::from(opt_text(s.clock_error_ms, 1)),
                Cell::from(opt_text(s.clock_offset_ms, 0)),
                Cell::from(opt_text(s.clock_drift_ppm, 1)),
                Cell::from(s.battery_pct.map_or("-".into(), |b| format!("{b:.0} %")))
                    .style(battery_style(s.battery_pct)),
                Cell::from(s.pending_commands.to_string()),
            ])
        });
        let widths = [
            Constraint::Length(7),
            Constraint::Length(11),
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(4),
        ];
        let table =
            Table::new(rows, widths)
                .header(header)
                .block(Block::default().borders(Borders::ALL).title(
                " worst sensors (stale first, then most gaps, highest RTT, largest clock error) ",
            ));
        frame.render_widget(table, area);
    }

    fn stale(&self) -> Paragraph<'static> {
        let stale: Vec<String> = self
            .status
            .sensors
            .iter()
            .filter(|s| s.state == "stale")
            .map(|s| s.sensor_id.to_string())
            .collect();
        let text = if stale.is_empty() {
            Line::styled("none", Style::new().fg(Color::Green))
        } else {
            let shown = stale.len().min(MAX_STALE_IDS);
            let more = stale.len() - shown;
            let mut ids = stale[..shown].join(" ");
            if more > 0 {
                ids.push_str(&format!(" … and {more} more"));
            }
            Line::styled(ids, state_style("stale"))
        };
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(format!(
            " stale sensors ({}): not heard from in time ",
            stale.len()
        )))
    }
}

/// The `n` worst sensors: stale ones first, then by gaps, RTT and clock error, worst first.
pub fn worst_sensors(sensors: &[SensorStatus], n: usize) -> Vec<&SensorStatus> {
    let mut worst: Vec<&SensorStatus> = sensors.iter().collect();
    worst.sort_by(|a, b| {
        (b.state == "stale")
            .cmp(&(a.state == "stale"))
            .then(b.gaps.cmp(&a.gaps))
            .then(f64::total_cmp(
                &b.rtt_ms.unwrap_or(0.0),
                &a.rtt_ms.unwrap_or(0.0),
            ))
            .then(f64::total_cmp(
                &b.clock_error_ms.unwrap_or(0.0),
                &a.clock_error_ms.unwrap_or(0.0),
            ))
            .then(a.sensor_id.cmp(&b.sensor_id))
    });
    worst.truncate(n);
    worst
}

/// Missing readings as a percentage of those that should be stored.
fn loss_pct(stored: u64, gaps: u64) -> f64 {
    let expected = stored + gaps;
    if expected == 0 {
        return 0.0;
    }
    gaps as f64 * 100.0 / expected as f64
}

fn loss_style(pct: f64) -> Style {
    if pct >= 1.0 {
        Style::new().fg(Color::Red)
    } else if pct >= 0.1 {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new().fg(Color::Green)
    }
}

fn state_style(state: &str) -> Style {
    match state {
        "awake" => Style::new().fg(Color::Green),
        "asleep" => Style::new().fg(Color::Cyan),
        "stale" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Yellow),
    }
}

fn battery_style(pct: Option<f32>) -> Style {
    match pct {
        Some(p) if p < 10.0 => Style::new().fg(Color::Red),
        Some(p) if p < 25.0 => Style::new().fg(Color::Yellow),
        _ => Style::new(),
    }
}

/// 1234567 as `1.23M`, 12345 as `12.3k`, small numbers as they are.
fn count_text(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

fn opt_text(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// Seconds as `42s`, `5m07s`, `3h12m`.
fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// Height of the totals and ingest row.
const TOP_HEIGHT: u16 = 10;
/// Most stale sensor ids listed by id.
const MAX_STALE_IDS: usize = 40;

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::hub::HubTotals;
    use crate::protocol::SensorKind;

    fn sensor(sensor_id: u32, state: &'static str, gaps: u64, rtt_ms: f64) -> SensorStatus {
        SensorStatus {
            sensor_id,
            kind: Some(SensorKind::Humidity),
            state,
            transport: None,
            sleepy: state == "asleep",
            last_seen_s: Some(0.5),
            readings_received: 1000,
            readings_stored: 1000 - gaps,
            duplicates: 0,
            gaps,
            alerts_stored: 1,
            rtt_ms: Some(rtt_ms),
            clock_offset_ms: Some(-1234.0),
            clock_drift_ppm: Some(12.5),
            clock_error_ms: Some(0.2),
            battery_pct: Some(7.0),
            pending_commands: 0,
        }
    }

    fn dashboard() -> Dashboard {
        Dashboard {
            listen: "127.0.0.1:7878".into(),
            database: "hub-data/hub.sqlite3".into(),
            status: HubStatus {
                uptime_s: 75.0,
                totals: HubTotals {
                    sensors: 3,
                    awake: 1,
                    asleep: 1,
                    stale: 1,
                    readings_stored: 123_456,
                    gaps: 124,
                    alerts_stored: 17,
                    ..HubTotals::default()
                },
                ingest_per_s: vec![10, 20, 4000, 9000, 12_345],
                sensors: vec![
                    sensor(1, "awake", 0, 0.4),
                    sensor(2, "asleep", 3, 9.0),
                    sensor(3, "stale", 1, 0.3),
                ],
            },
        }
    }

    fn draw(dashboard: &Dashboard, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| dashboard.render(frame)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn shows_totals_rate_loss_and_stale_sensors() {
        let lines = draw(&dashboard(), 140, 30);
        let text = lines.join("\n");
        assert!(text.contains("Tickwire sensor hub"), "{text}");
        assert!(text.contains("up 75s"), "{text}");
        assert!(text.contains("123.5k stored"), "{text}");
        assert!(text.contains("ingest 12.3k readings/s"), "{text}");
        assert!(text.contains("0.100 %"), "{text}");
        assert!(text.contains("1 stale"), "{text}");
        assert!(text.contains("stale sensors (1)"), "{text}");
        // The worst-sensor table: the stale one first, then the one with most gaps.
        let row = |id: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(&format!("│{id} ")))
                .unwrap_or_else(|| panic!("no row for sensor {id}:\n{text}"))
        };
        assert!(row("3") < row("2") && row("2") < row("1"), "{text}");
        let stale_row = &lines[row("3")];
        assert!(stale_row.contains("stale") && stale_row.contains("7 %"));
    }

    #[test]
    fn renders_in_a_small_terminal_and_with_no_sensors() {
        draw(&dashboard(), 40, 10);
        draw(&Dashboard::default(), 80, 24);
        draw(&Dashboard::default(), 1, 1);
    }

    #[test]
    fn worst_ranks_stale_then_gaps_then_rtt() {
        let sensors = vec![
            sensor(1, "awake", 0, 5.0),
            sensor(2, "awake", 0, 50.0),
            sensor(3, "awake", 7, 1.0),
            sensor(4, "stale", 0, 1.0),
        ];
        let ids: Vec<u32> = worst_sensors(&sensors, 3)
            .iter()
            .map(|s| s.sensor_id)
            .collect();
        assert_eq!(ids, vec![4, 3, 2]);
    }

    #[test]
    fn numbers_read_short() {
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(12_345), "12.3k");
        assert_eq!(count_text(1_234_567), "1.23M");
        assert_eq!(duration_text(307.0), "5m07s");
        assert_eq!(duration_text(7300.0), "2h01m");
        assert_eq!(loss_pct(0, 0), 0.0);
    }
}
