//! The Kafka bus and control plane: a real nisshi broker, a real Redis, the
//! real binary in its roles, and real Kafka clients (rdkafka here, Python's
//! confluent-kafka in the end-to-end test).

pub(crate) mod bus;
mod claim_check;
mod dead_letters;
mod monitor_group;
mod python_client;
mod replies;
mod results;

pub(crate) use bus::{crawl_request, one_host_site, Bus};
