//! The gateway bounds its clients: a cap on connections, and deadlines for
//! a request's headers and its body.

use super::Gateway;
use crate::kafka::Bus;
use anyhow::{ensure, Result};
use std::time::Duration;

/// The gateway bounds its clients: past `rest.max_connections` a new
/// connection is closed at once, and a client that does not finish its
/// headers within `rest.header_timeout` is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_caps_connections_and_drops_slow_clients() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bus = Bus::start("", "", 1).await?;
    let env = [
        ("SPINNERET_REST__MAX_CONNECTIONS", "4"),
        ("SPINNERET_REST__HEADER_TIMEOUT", "3"),
    ];
    let gw = Gateway::start(&mut bus, &env).await?;
    let addr = gw.base.trim_start_matches("http://").to_string();
    // Until the end of its first read: EOF (or an error) means closed.
    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
    // Six at once, watched at once for well under the header timeout: only
    // a connection over the cap is closed this soon.
    let mut watching = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        watching.spawn(async move { closed_within(&mut s, Duration::from_millis(1500)).await });
    }
    let mut refused = 0;
    while let Some(closed) = watching.join_next().await {
        refused += usize::from(closed?);
    }
    ensure!(
        (2..=3).contains(&refused),
        "{refused} of 6 connections over a cap of 4 were closed at once"
    );
    let mut slow = tokio::net::TcpStream::connect(&addr).await?;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: gw\r\n").await?;
    ensure!(
        closed_within(&mut slow, Duration::from_secs(20)).await,
        "a client that never finished its headers was kept"
    );
    Ok(())
}

/// A client whose request body drips is answered 408 and cut off once
/// `rest.body_timeout` has passed, however slowly it keeps sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_drips_is_cut_off() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bus = Bus::start("", "", 1).await?;
    let env = [("SPINNERET_REST__BODY_TIMEOUT", "1")];
    let gw = Gateway::start(&mut bus, &env).await?;
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await?;
    s.write_all(b"POST /feed HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await?;
    let started = std::time::Instant::now();
    let (mut read, mut write) = s.into_split();
    // A byte every 200 ms: never idle, never done.
    let drip = tokio::spawn(async move {
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), read.read(&mut buf)).await? {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    drip.abort();
    let answer = String::from_utf8_lossy(&answer);
    ensure!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    ensure!(answer.contains("rest.body_timeout"), "{answer}");
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "cut off after {:?}",
        started.elapsed()
    );
    Ok(())
}
