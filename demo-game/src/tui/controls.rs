//! Keys to game actions. Terminals report key presses but (mostly) not releases, so movement
//! steers: an arrow key (or WASD) sets the heading on its axis, the opposite key cancels it, and
//! space stops. The heading is held until changed, which reads clearly and works everywhere.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::world::Input;

/// What a key asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the heading may have changed).
    None,
    /// Leave the game.
    Quit,
    /// Switch the simulated bad network on or off.
    ToggleBadNetwork,
    /// Send this chat line.
    Chat(String),
}

/// The heading and the chat line being typed.
#[derive(Clone, Debug, Default)]
pub struct Controls {
    x: i8,
    y: i8,
    /// The chat line being typed, while typing.
    pub typing: Option<String>,
}

impl Controls {
    /// The input to hold this tick.
    pub fn input(&self) -> Input {
        Input::new(self.y < 0, self.y > 0, self.x < 0, self.x > 0)
    }

    /// Takes one key event.
    pub fn handle(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(line) = self.typing.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    let line = self.typing.take().unwrap_or_default();
                    if !line.trim().is_empty() {
                        return Action::Chat(line);
                    }
                }
                KeyCode::Esc => self.typing = None,
                KeyCode::Backspace => {
                    line.pop();
                }
                KeyCode::Char(c) if line.chars().count() < crate::protocol::MAX_CHAT_CHARS => {
                    line.push(c);
                }
                _ => {}
            }
            return Action::None;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('n') => return Action::ToggleBadNetwork,
            KeyCode::Enter | KeyCode::Char('t') => self.typing = Some(String::new()),
            KeyCode::Left | KeyCode::Char('a') => self.x = steer(self.x, -1),
            KeyCode::Right | KeyCode::Char('d') => self.x = steer(self.x, 1),
            KeyCode::Up | KeyCode::Char('w') => self.y = steer(self.y, -1),
            KeyCode::Down | KeyCode::Char('s') => self.y = steer(self.y, 1),
            KeyCode::Char(' ') => (self.x, self.y) = (0, 0),
            _ => {}
        }
        Action::None
    }
}

/// Pressing towards `direction`: cancels the opposite heading, or sets this one.
fn steer(current: i8, direction: i8) -> i8 {
    if current == -direction {
        0
    } else {
        direction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn arrows_steer_and_space_stops() {
        let mut c = Controls::default();
        c.handle(press(KeyCode::Right));
        c.handle(press(KeyCode::Up));
        assert_eq!(c.input().direction(), (1.0, -1.0));
        c.handle(press(KeyCode::Left));
        assert_eq!(c.input().direction(), (0.0, -1.0));
        c.handle(press(KeyCode::Char(' ')));
        assert_eq!(c.input(), Input::NONE);
        assert_eq!(c.handle(press(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn chat_is_typed_then_sent() {
        let mut c = Controls::default();
        c.handle(press(KeyCode::Enter));
        for ch in "hi q".chars() {
            assert_eq!(c.handle(press(KeyCode::Char(ch))), Action::None);
        }
        assert_eq!(c.handle(press(KeyCode::Enter)), Action::Chat("hi q".into()));
        assert!(c.typing.is_none());
    }
}
