//! The contract end to end from an independent client: Python's
//! confluent-kafka in `tests/e2e/contract_client.py` against `up`.

use super::Bus;
use crate::harness::{Site, SiteSpec};
use anyhow::{ensure, Result};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_python_client_sees_the_contract() -> Result<()> {
    let python = crate::harness::tools().join("py/bin/python");
    ensure!(
        python.exists(),
        "{} is missing: run scripts/setup --test",
        python.display()
    );
    let site = Site::start(SiteSpec {
        pages: 40,
        hosts: 2,
        seed: 5,
    })
    .await?;
    let mut bus = Bus::start("", "", 2).await?;
    bus.role("up", &["--concurrency", "8"])?;
    let expected: Vec<String> = site.expected(0, Some(1)).into_iter().collect();
    let spec = json!({
        "brokers": bus.broker.brokers(),
        "seed": site.url(0),
        "expected": expected,
        "slow_seed": site.url(1),
        "slow_host": url::Url::parse(&site.url(1))?.host_str(),
    });
    let spec_file = bus.scratch.path("e2e.json");
    std::fs::write(&spec_file, spec.to_string())?;
    let out = tokio::process::Command::new(&python)
        .arg(crate::harness::repo().join("tests/e2e/contract_client.py"))
        .arg(&spec_file)
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}\n--- spinneret ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        bus.logs()
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))?;
    ensure!(
        report["checked"].as_u64().is_some_and(|n| n >= 8),
        "report {report}"
    );
    Ok(())
}
