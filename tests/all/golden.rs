//! Spider golden tests: a recorded response in, the expected items and
//! requests out. `SPINNERET_BLESS=1` rewrites the expected files.
//!
//! Layout: `tests/golden/<spider>/<case>.response.json` and, next to it,
//! `<case>.expected.json`.

use crate::harness::{repo, Scratch};
use anyhow::{Context, Result};

#[tokio::test(flavor = "multi_thread")]
async fn spiders_match_their_golden_files() -> Result<()> {
    let bless = std::env::var_os("SPINNERET_BLESS").is_some();
    let root = repo().join("tests/golden");
    let mut cases = 0;
    for spider_dir in std::fs::read_dir(&root)? {
        let spider_dir = spider_dir?.path();
        let spider = spider_dir
            .file_name()
            .and_then(|s| s.to_str())
            .context("spider dir")?
            .to_string();
        // A fixed seed makes the `random` host import (wandering) repeatable.
        let s = Scratch::new(
            &[(spider.as_str(), spider.as_str())],
            "[plugins]\nrandom_seed = 42\n",
        )?;
        for case in std::fs::read_dir(&spider_dir)? {
            let case = case?.path();
            let Some(name) = case
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".response.json"))
            else {
                continue;
            };
            let out = s
                .command("parse")
                .args(["--spider", &spider, "--response"])
                .arg(&case)
                .output()
                .await?;
            assert!(
                out.status.success(),
                "{spider}/{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got = String::from_utf8(out.stdout)?;
            let expected_path = spider_dir.join(format!("{name}.expected.json"));
            if bless {
                std::fs::write(&expected_path, &got)?;
            }
            let expected = std::fs::read_to_string(&expected_path).with_context(|| {
                format!(
                    "{} missing: run with SPINNERET_BLESS=1",
                    expected_path.display()
                )
            })?;
            assert_eq!(
                got, expected,
                "{spider}/{name} differs from its golden file (SPINNERET_BLESS=1 to accept)"
            );
            cases += 1;
        }
    }
    assert!(cases >= 3, "golden cases went missing: found {cases}");
    Ok(())
}
