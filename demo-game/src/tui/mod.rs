//! The terminal client: ratatui on its re-exported crossterm. One loop at 60 frames per
//! second: handle the network until the frame is due, read the keys, advance the prediction,
//! draw.

mod arena;
mod controls;

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event as TermEvent};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style};
use ratatui::widgets::Paragraph;
use ratatui::DefaultTerminal;
use thiserror::Error;
use tickwire::DisconnectReason;

pub use arena::TITLE;
pub use controls::{Action, Controls};

use crate::client::{ChatLine, Frame as GameFrame, GameClient};
use crate::hud::{self, HudFigures, HUD_HEIGHT};
use crate::protocol::ScoreEntry;

/// Smallest terminal the client draws in, columns.
pub const MIN_WIDTH: u16 = 80;
/// Smallest terminal the client draws in, rows.
pub const MIN_HEIGHT: u16 = 24;

/// Why the terminal client stopped with an error.
#[derive(Debug, Error)]
pub enum TuiError {
    /// Not running in a terminal.
    #[error("not a terminal ({0}): run `demo-game play` or `local` in an interactive terminal, or use `demo-game bots` for headless players")]
    NotATerminal(io::Error),
    /// The terminal is too small.
    #[error("the terminal is {width}x{height}; the game needs at least {MIN_WIDTH}x{MIN_HEIGHT}: enlarge the window")]
    TooSmall {
        /// Columns available.
        width: u16,
        /// Rows available.
        height: u16,
    },
    /// Drawing failed.
    #[error("terminal error: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection or went silent.
    #[error("disconnected: {0}")]
    Disconnected(DisconnectReason),
}

/// Checks that this is a terminal of at least [`MIN_WIDTH`] x [`MIN_HEIGHT`].
pub fn check_size() -> Result<(), TuiError> {
    let (width, height) = ratatui::crossterm::terminal::size().map_err(TuiError::NotATerminal)?;
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return Err(TuiError::TooSmall { width, height });
    }
    Ok(())
}

/// Plays in this terminal until the player quits (or the connection ends), then restores the
/// terminal and leaves the game.
pub async fn run(mut client: GameClient) -> Result<(), TuiError> {
    let mut terminal = ratatui::try_init()?;
    let result = play(&mut terminal, &mut client).await;
    let restored = ratatui::try_restore();
    client.disconnect().await;
    result?;
    restored?;
    Ok(())
}

async fn play(terminal: &mut DefaultTerminal, client: &mut GameClient) -> Result<(), TuiError> {
    let mut controls = Controls::default();
    let frame_time = Duration::from_secs_f64(1.0 / FRAME_HZ);
    let mut next = tokio::time::Instant::now();
    loop {
        client.pump_until(next).await;
        next += frame_time;
        let now = Instant::now();
        if let Some(reason) = client.disconnected() {
            return Err(TuiError::Disconnected(reason));
        }
        while event::poll(Duration::ZERO)? {
            let TermEvent::Key(key) = event::read()? else {
                continue;
            };
            match controls.handle(key) {
                Action::Quit => return Ok(()),
                Action::ToggleBadNetwork => {
                    client.toggle_bad_network();
                }
                Action::Chat(line) => client.send_chat(&line),
                Action::None => {}
            }
        }
        client.update(now, controls.input());
        let frame = client.frame(now);
        let figures = HudFigures::of(client, now);
        let screen = Screen {
            names: client
                .scoreboard()
                .iter()
                .map(|e| (e.player, e.name.clone()))
                .collect(),
            me: client.welcome().map(|w| w.player.0),
            scoreboard: scoreboard_lines(client),
            chat: client.chat().cloned().collect(),
            typing: controls.typing.clone(),
            frame,
            figures,
        };
        terminal.draw(|out| draw(out, &screen))?;
    }
}

/// The top of the scoreboard, and this player's own line below it if it is not there.
fn scoreboard_lines(client: &GameClient) -> Vec<ScoreEntry> {
    let mut lines = client.scoreboard().to_vec();
    if let Some((_, own)) = client.own_score() {
        if !lines.iter().any(|e| e.player == own.player) {
            lines.push(own.clone());
        }
    }
    lines
}

/// Everything one drawn screen shows.
struct Screen {
    frame: GameFrame,
    figures: HudFigures,
    names: HashMap<u32, String>,
    me: Option<u32>,
    scoreboard: Vec<ScoreEntry>,
    chat: Vec<ChatLine>,
    typing: Option<String>,
}

fn draw(out: &mut ratatui::Frame<'_>, screen: &Screen) {
    let area = out.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "The terminal is {}x{}; the game needs at least {MIN_WIDTH}x{MIN_HEIGHT}. Enlarge the window, or press q to quit.",
            area.width, area.height
        );
        out.render_widget(
            Paragraph::new(text)
                .wrap(ratatui::widgets::Wrap { trim: true })
                .style(Style::default().fg(Color::Yellow)),
            area,
        );
        return;
    }
    let [main, hud_area] =
        Layout::vertical([Constraint::Min(10), Constraint::Length(HUD_HEIGHT)]).areas(area);
    let [arena_area, side] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(SIDE_WIDTH)]).areas(main);
    let [score_area, chat_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(side);
    arena::draw_arena(out, arena_area, &screen.frame, &screen.names);
    arena::draw_scoreboard(out, score_area, &screen.scoreboard, screen.me);
    arena::draw_chat(out, chat_area, screen.chat.iter(), screen.typing.as_deref());
    hud::draw(out, hud_area, &screen.figures);
}

/// Frames drawn per second.
const FRAME_HZ: f64 = 60.0;
/// Width of the scoreboard and chat column.
const SIDE_WIDTH: u16 = 28;

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use tickwire::snapshot::{EntityId, SampleKind};

    use super::*;
    use crate::world::Body;

    fn screen() -> Screen {
        Screen {
            frame: GameFrame {
                me: Some((EntityId(12), Body::at(10.0, 5.0))),
                others: vec![(EntityId(13), Body::at(30.0, 20.0))],
                coins: vec![Body::at(50.0, 10.0)],
                render_tick: 100.0,
                kind: Some(SampleKind::Interpolated),
            },
            figures: HudFigures {
                rtt_ms: 12.0,
                down_series: vec![10, 20, 30],
                up_series: vec![5, 5, 6],
                transport: "native",
                ..HudFigures::default()
            },
            names: HashMap::from([(12, "you".into()), (13, "bot0".into())]),
            me: Some(12),
            scoreboard: vec![ScoreEntry {
                player: 13,
                name: "bot0".into(),
                score: 4,
            }],
            chat: vec![ChatLine {
                from: String::new(),
                text: "bot0 joined".into(),
            }],
            typing: None,
        }
    }

    fn render(width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|out| draw(out, &screen())).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn draws_arena_scoreboard_chat_and_hud() {
        let text = render(100, 32);
        if std::env::var_os("SHOW_SCREEN").is_some() {
            println!("{text}");
        }
        for needle in [
            "Tickwire arena",
            "@",
            "$",
            "b",
            "bot0",
            "RTT 12.0 ms",
            "native",
            "kbps down",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
    }

    #[test]
    fn a_small_terminal_shows_the_minimum_size() {
        let text = render(40, 10);
        assert!(text.contains("80x24"), "{text}");
    }
}
