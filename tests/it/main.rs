//! The integration tests, as one test binary (`cargo test --test it`): each
//! file here is a module, so a test's path is `FILE::NAME`, e.g.
//! `daemon_e2e::stops_within_two_seconds_on_sigterm`. The tests run as
//! threads of one process: nothing here may change process-wide state
//! (environment, working directory, fixed ports); children get their
//! environment through `Command`.

mod common;

mod browser;
mod cameras;
mod classifier;
mod cli_detect;
mod client_annotate;
mod config_errors;
mod convert;
mod convert_io;
mod daemon_e2e;
mod detect_models;
mod hardening;
mod http_hardening;
mod http_server;
mod mqtt;
mod rtsp;
mod sources;
mod systemd_service;
mod tracking;
