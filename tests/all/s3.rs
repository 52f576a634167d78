//! A real S3 server for the object store's tests: moto_server (which
//! `scripts/setup --test` installs) on a free loopback port.

use crate::harness::{free_port, tools};
use anyhow::{bail, ensure, Context, Result};
use std::process::Stdio;
use std::time::Duration;

/// A real S3 server on a free loopback port (moto_server, which the setup
/// installs) with one bucket; it keeps its objects in memory, so a
/// restart empties it (the bucket is made again).
pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: Option<std::process::Child>,
}

impl S3Server {
    pub async fn start(bucket: &str) -> Result<S3Server> {
        let mut s = S3Server {
            port: free_port()?,
            bucket: bucket.into(),
            child: None,
        };
        s.resume().await?;
        Ok(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[output.objects]` table for a store under `prefix`.
    pub fn config(&self, prefix: &str) -> String {
        format!(
            "[output.objects]\nurl = \"s3://{}/{prefix}\"\nendpoint = \"{}\"\n",
            self.bucket,
            self.endpoint()
        )
    }

    /// The credentials a client of it needs (any will do).
    pub fn env() -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ]
    }

    /// Stop it: unreachable until [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start (again) on its port, with its bucket.
    pub async fn resume(&mut self) -> Result<()> {
        let child = std::process::Command::new(tools().join("py/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto_server (run scripts/setup --test)")?;
        self.child = Some(child);
        let bucket = format!("{}/{}", self.endpoint(), self.bucket);
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match client.put(&bucket).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                _ if std::time::Instant::now() > deadline => bail!("moto_server did not start"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A read as a client with credentials makes it (moto refuses
    /// anonymous reads of private objects and does not check signatures).
    fn read(url: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().get(url).header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        )
    }

    /// An object's bytes, by its `s3://bucket/key` URI.
    pub async fn get(&self, uri: &str) -> Result<Vec<u8>> {
        let key = uri.strip_prefix("s3://").context("an s3:// URI")?;
        let r = Self::read(&format!("{}/{key}", self.endpoint()))
            .send()
            .await?;
        ensure!(r.status().is_success(), "GET {uri}: {}", r.status());
        Ok(r.bytes().await?.to_vec())
    }

    /// The keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let url = format!(
            "{}/{}?list-type=2&prefix={prefix}",
            self.endpoint(),
            self.bucket
        );
        let xml = Self::read(&url).send().await?.text().await?;
        Ok(xml
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
