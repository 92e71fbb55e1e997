//! Drawing the arena, the scoreboard and the chat.

use std::collections::HashMap;

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Circle};
use ratatui::widgets::{Block, List, ListItem, Paragraph, Wrap};
use ratatui::Frame as TermFrame;

use crate::client::{ChatLine, Frame};
use crate::protocol::ScoreEntry;
use crate::world::{ARENA_HEIGHT, ARENA_WIDTH, PLAYER_RADIUS};

/// The arena's title; the PTY test looks for it.
pub const TITLE: &str = " Tickwire arena: grab the coins, bump hard to steal one ";

/// The keys, shown under the arena.
const KEYS: &str = " arrows/wasd steer · space stop · enter chat · n bad network · q quit ";

/// Draws the players and coins of `frame` into `area`.
pub(super) fn draw_arena(
    out: &mut TermFrame<'_>,
    area: Rect,
    frame: &Frame,
    names: &HashMap<u32, String>,
) {
    let me = frame.me;
    let canvas = Canvas::default()
        .block(
            Block::bordered()
                .title(TITLE)
                .title_bottom(KEYS)
                .border_style(Style::default().fg(Color::Gray)),
        )
        .marker(Marker::Braille)
        .x_bounds([0.0, f64::from(ARENA_WIDTH)])
        .y_bounds([0.0, f64::from(ARENA_HEIGHT)])
        .paint(|ctx| {
            // Canvas y grows upwards; the arena's grows downwards.
            let flip = |y: f32| f64::from(ARENA_HEIGHT - y);
            for coin in &frame.coins {
                ctx.print(
                    f64::from(coin.x),
                    flip(coin.y),
                    Span::styled(
                        "$",
                        Style::default()
                            .fg(Color::Yellow)
                            .add_modifier(Modifier::BOLD),
                    ),
                );
            }
            for (id, body) in &frame.others {
                let color = player_color(id.0);
                ctx.draw(&Circle {
                    x: f64::from(body.x),
                    y: flip(body.y),
                    radius: f64::from(PLAYER_RADIUS),
                    color,
                });
                let initial = names
                    .get(&id.0)
                    .and_then(|n| n.chars().next())
                    .unwrap_or('?');
                ctx.print(
                    f64::from(body.x),
                    flip(body.y),
                    Span::styled(initial.to_string(), Style::default().fg(color)),
                );
            }
            if let Some((_, body)) = me {
                ctx.draw(&Circle {
                    x: f64::from(body.x),
                    y: flip(body.y),
                    radius: f64::from(PLAYER_RADIUS),
                    color: Color::LightGreen,
                });
                ctx.print(
                    f64::from(body.x),
                    flip(body.y),
                    Span::styled(
                        "@",
                        Style::default()
                            .fg(Color::LightGreen)
                            .add_modifier(Modifier::BOLD),
                    ),
                );
            }
        });
    out.render_widget(canvas, area);
}

/// Draws the scoreboard.
pub(super) fn draw_scoreboard(
    out: &mut TermFrame<'_>,
    area: Rect,
    scores: &[ScoreEntry],
    me: Option<u32>,
) {
    let items: Vec<ListItem<'_>> = scores
        .iter()
        .map(|entry| {
            let style = if Some(entry.player) == me {
                Style::default()
                    .fg(Color::LightGreen)
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::default().fg(player_color(entry.player))
            };
            ListItem::new(Line::from(vec![
                Span::styled(format!("{:>4} ", entry.score), style),
                Span::styled(entry.name.clone(), style),
            ]))
        })
        .collect();
    out.render_widget(
        List::new(items).block(Block::bordered().title(" score ")),
        area,
    );
}

/// Draws the chat, newest at the bottom, and the line being typed.
pub(super) fn draw_chat<'a>(
    out: &mut TermFrame<'_>,
    area: Rect,
    lines: impl Iterator<Item = &'a ChatLine>,
    typing: Option<&str>,
) {
    let all: Vec<&ChatLine> = lines.collect();
    let room = usize::from(area.height.saturating_sub(3));
    let mut text: Vec<Line<'_>> = all[all.len().saturating_sub(room)..]
        .iter()
        .map(|line| {
            if line.from.is_empty() {
                Line::styled(line.text.clone(), Style::default().fg(Color::DarkGray))
            } else {
                Line::from(vec![
                    Span::styled(format!("{}: ", line.from), Style::default().fg(Color::Cyan)),
                    Span::raw(line.text.clone()),
                ])
            }
        })
        .collect();
    if let Some(typing) = typing {
        text.push(Line::styled(
            format!("> {typing}_"),
            Style::default().fg(Color::White),
        ));
    }
    out.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" chat ")),
        area,
    );
}

/// A stable colour per player.
fn player_color(id: u32) -> Color {
    const COLORS: [Color; 6] = [
        Color::LightRed,
        Color::LightBlue,
        Color::LightMagenta,
        Color::LightCyan,
        Color::Yellow,
        Color::White,
    ];
    COLORS[id as usize % COLORS.len()]
}
