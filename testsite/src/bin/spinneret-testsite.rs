//! Serve the test site until interrupted. Prints the seed URL on stdout, and
//! with `--expect DEPTH FILE` writes the URLs a crawl to DEPTH must return.

use clap::Parser;
use spinneret_testsite::{Quirks, Site, SiteSpec};
use std::io::Write;

#[derive(Parser)]
#[command(about = "Serve Spinneret's deterministic test site on loopback")]
struct Args {
    #[arg(long, default_value_t = 300)]
    pages: usize,
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write the expected URL set of a crawl to this depth ("all" = unlimited)...
    #[arg(long, num_args = 2, value_names = ["DEPTH", "FILE"])]
    expect: Option<Vec<String>>,
    /// Pages carry an ETag and answer 304 to a request naming it.
    #[arg(long)]
    etags: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = SiteSpec {
        pages: args.pages,
        hosts: args.hosts,
        seed: args.seed,
    };
    let quirks = Quirks {
        etags: args.etags,
        ..Quirks::default()
    };
    let site = Site::start_with(spec, quirks).await?;
    if let Some(e) = &args.expect {
        let depth = if e[0] == "all" {
            None
        } else {
            Some(e[0].parse()?)
        };
        let urls: Vec<String> = site.expected(0, depth).into_iter().collect();
        std::fs::write(&e[1], urls.join("\n") + "\n")?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", site.seed_url())?;
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
