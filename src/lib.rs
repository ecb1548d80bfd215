//! edgevision: a real-time object-detection daemon for edge devices.
//!
//! Data flows one way: source -> infer -> annotate -> encode -> broadcast.
//! This crate holds every stage as a module; `main.rs` only parses the
//! command line and calls into them.

pub mod annotate;
pub mod capture;
pub mod cmd;
pub mod config;
pub mod convert;
pub mod http;
pub mod hub;
pub mod infer;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod pipeline;
pub mod service;
pub mod text;
pub mod tflite;
pub mod track;
