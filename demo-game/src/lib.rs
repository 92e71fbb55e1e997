//! # demo-game
//!
//! A small multiplayer arena game in the terminal, built only on Tickwire's public API, to show
//! how to embed the engine in a real game loop: a server-authoritative fixed tick, delta
//! snapshots, inputs stamped with the tick they apply to and sent redundantly, client-side
//! prediction with reconciliation for the local player, interpolation for everyone else, and a
//! reliable channel for the scoreboard and chat.
//!
//! ## Layout
//!
//! | module | role |
//! |---|---|
//! | [`world`] | the game rules (movement, bumps, coins), shared by the server and prediction |
//! | [`entity`] | what a snapshot carries per entity, bit-packed; the interpolated scene |
//! | [`protocol`] | channels and messages |
//! | [`net`] | the driver configuration, built in one place from the network options |
//! | [`tokens`] | key and connect-token files: generate, mint, load |
//! | [`server`] | the authoritative tick loop |
//! | [`client`] | the network side of a player: prediction, reconciliation, interpolation |
//! | [`prediction`] | the local player's predicted state and its corrections |
//! | [`meter`] | RTT, loss and kbps over the last seconds |
//! | [`hud`] | the HUD: network figures and sparklines |
//! | [`bot`] | headless players and their report |
//! | [`tui`] | the terminal client (ratatui) and its HUD |
//! | [`local`] | a server, bots and you in one process |
//! | [`cli`] | the command line |

pub mod bot;
pub mod cli;
pub mod client;
pub mod entity;
pub mod hud;
pub mod local;
pub mod meter;
pub mod net;
pub mod percentile;
pub mod prediction;
pub mod protocol;
pub mod server;
pub mod tokens;
pub mod tui;
pub mod world;
