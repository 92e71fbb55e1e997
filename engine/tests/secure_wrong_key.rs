//! A token sealed with another key is refused: no session, no state, no reply, a counter.

mod support;

use support::secure::{attempt, token_with, UNIX_NOW};
use support::server_addr;
use tickwire::PrivateKey;

#[test]
fn a_token_from_another_key_is_refused_without_state() {
    let other = PrivateKey::from_bytes([8; 32]);
    let token = token_with(&other, 1, vec![server_addr()], UNIX_NOW);
    let result = attempt(&token, |_| {});
    assert!(!result.connected);
    assert_eq!(result.server_connections, 0);
    assert!(result.dropped.token_invalid >= 1, "{:?}", result.dropped);
    assert_eq!(result.server_sent, 0, "a refused token gets no reply");
}

#[test]
fn a_good_token_connects() {
    let token = support::secure::token();
    let result = attempt(&token, |_| {});
    assert!(result.connected);
    assert_eq!(result.server_connections, 1);
    assert_eq!(result.dropped.token_invalid, 0);
}
