//! A token past its expiry is refused: no session, no state, a counter.

mod support;

use support::secure::{attempt, key, token_with, UNIX_NOW};
use support::server_addr;

#[test]
fn an_expired_token_is_refused_without_state() {
    // Issued 60 s before the server's clock for the default 30 s.
    let token = token_with(&key(), 1, vec![server_addr()], UNIX_NOW - 60);
    let result = attempt(&token, |_| {});
    assert!(!result.connected);
    assert_eq!(result.server_connections, 0);
    assert!(result.dropped.token_expired >= 1, "{:?}", result.dropped);
    assert_eq!(result.server_sent, 0);
}

#[test]
fn a_token_expires_on_the_servers_clock_not_at_its_start() {
    // Valid when the server starts, expired 40 s later: the server counts time from its
    // `unix_time` with the instants it is given.
    let token = token_with(&key(), 1, vec![server_addr()], UNIX_NOW - 29);
    assert!(!token.is_expired(UNIX_NOW));
    let fresh = attempt(&token, |_| {});
    assert!(fresh.connected);
    let late = attempt(&token, |config| {
        if let tickwire::Security::Tokens(tokens) = &mut config.security {
            tokens.unix_time = UNIX_NOW + 40;
        }
    });
    assert!(!late.connected);
    assert!(late.dropped.token_expired >= 1);
}
