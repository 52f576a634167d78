//! The monitors (contract §2): what arrives on the incoming topic is told
//! apart and validated here; the Kafka ingest and the control plane build
//! on it.

pub mod schema;
