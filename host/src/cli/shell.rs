//! `spinneret shell URL`: fetch a page once (through the crawl's fetcher
//! and address policy), then try selectors on it, as `scrapy shell`:
//! parsel's queries (`h2 a::attr(href)`, `title::text`), the page's
//! links, formats and headers. `--query` answers and exits (scripts,
//! tests); `--save` writes the page as `spinneret parse --response` reads
//! it, so a spider can be developed against it offline.

use super::args::ShellArgs;
use crate::config::Settings;
use crate::extract::{formats, split_query, Bounds, Document, Format};
use crate::fetch::{Fetched, Fetcher, Outgoing};
use anyhow::{Context, Result};
use serde_json::json;
use std::io::{BufRead, Write};

const HELP: &str = "\
  CSS            the matches' outer HTML, one per line (parsel's .getall())
  CSS::text      their own text nodes
  CSS::attr(a)   their attribute a
  :elements CSS  the matches whole, as JSON (tag, text, texts, attrs, html)
  :links         the page's links, with the crawl's default filters
  :markdown :text :metadata   the page's formats
  :headers       the response's status and headers
  :help :quit";

pub(super) async fn shell(settings: Settings, args: ShellArgs) -> Result<i32> {
    let fetcher = Fetcher::new(&settings.crawl)?;
    let out = Outgoing {
        url: &args.url,
        method: "GET",
        headers: &[],
        body: None,
        follow_redirects: true,
        redirects: 0,
        truncate_at: None,
        budget: None,
    };
    let fetched = fetcher
        .fetch(&out)
        .await
        .with_context(|| format!("cannot fetch {}", args.url))?;
    let page = Shell::new(fetched, &settings);
    let mut err = std::io::stderr().lock();
    writeln!(err, "{}", page.summary())?;
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_vec_pretty(&page.recorded())?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(
            err,
            "saved to {}: spinneret parse --spider NAME --response {0}",
            path.display()
        )?;
    }
    let mut stdout = std::io::stdout().lock();
    if !args.query.is_empty() {
        for q in &args.query {
            writeln!(stdout, "{}", page.answer(q))?;
        }
        return Ok(0);
    }
    writeln!(err, "{HELP}")?;
    let stdin = std::io::stdin();
    loop {
        write!(err, "> ")?;
        err.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(0);
        }
        match line.trim() {
            "" => continue,
            ":quit" | ":q" | "exit" => return Ok(0),
            ":help" => writeln!(err, "{HELP}")?,
            q => writeln!(stdout, "{}", page.answer(q))?,
        }
    }
}

/// The fetched page and its parse, made once.
struct Shell {
    fetched: Fetched,
    text: String,
    document: Result<Document, String>,
    max_links: usize,
}

impl Shell {
    fn new(fetched: Fetched, settings: &Settings) -> Shell {
        let enc = crate::fetch::encoding_of(fetched.header("content-type"), &fetched.body);
        let text = enc.decode(&fetched.body).0.into_owned();
        let document = Document::parse(&text, &Bounds::default()).map_err(|e| e.to_string());
        Shell {
            fetched,
            text,
            document,
            max_links: settings.crawl.max_links_per_page,
        }
    }

    fn summary(&self) -> String {
        let f = &self.fetched;
        format!(
            "{} {} ({}, {} bytes, {} ms)",
            f.status,
            f.response_url,
            f.header("content-type").unwrap_or("no content type"),
            f.body.len(),
            f.elapsed.as_millis()
        )
    }

    /// The answer to one line of the shell.
    fn answer(&self, q: &str) -> String {
        let url = &self.fetched.response_url;
        let format = |f| {
            let made = formats::make(&self.text, url, &[f], false);
            let value = match f {
                Format::Markdown => made.markdown.map(Into::into),
                Format::Text => made.text.map(Into::into),
                _ => made.metadata,
            };
            match (value, made.error) {
                (Some(serde_json::Value::String(s)), _) => s,
                (Some(v), _) => v.to_string(),
                (None, e) => format!("error: {}", e.unwrap_or_default()),
            }
        };
        match q {
            ":markdown" => return format(Format::Markdown),
            ":text" => return format(Format::Text),
            ":metadata" => return format(Format::Metadata),
            ":headers" => {
                let f = &self.fetched;
                let mut out = format!("{} {}", f.status, f.reason);
                for (k, v) in &f.headers {
                    out.push_str(&format!("\n{k}: {v}"));
                }
                return out;
            }
            ":links" => return self.links(),
            _ => {}
        }
        let document = match &self.document {
            Ok(d) => d,
            Err(e) => return format!("error: {e}"),
        };
        if let Some(css) = q.strip_prefix(":elements ") {
            return match document.select(css.trim(), &Bounds::default()) {
                Ok(els) => els
                    .iter()
                    .map(|e| {
                        json!({"tag": e.tag, "text": e.text, "texts": e.texts,
                               "attrs": e.attrs, "html": e.html, "truncated": e.truncated})
                        .to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(e) => format!("error: {e}"),
            };
        }
        let (css, pick) = split_query(q);
        match document.select(css, &Bounds::default()) {
            Ok(els) => els
                .into_iter()
                .flat_map(|e| e.picked(&pick))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("error: {e}"),
        }
    }

    fn links(&self) -> String {
        let Ok(base) = url::Url::parse(&self.fetched.response_url) else {
            return "error: the page's URL does not parse".into();
        };
        let filters = crate::links::LinkFilters::default();
        crate::links::extract(&self.fetched.body, &base, &filters, self.max_links)
            .links
            .iter()
            .map(|l| format!("{}  {}", l.url, l.text))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The page as `spinneret parse --response` reads it: its body is
    /// text, so its content type says UTF-8 whatever the page's was.
    fn recorded(&self) -> serde_json::Value {
        let f = &self.fetched;
        let headers: serde_json::Map<String, serde_json::Value> = f
            .headers
            .iter()
            .map(|(k, v)| match k.eq_ignore_ascii_case("content-type") {
                true => {
                    let mime = v.split(';').next().unwrap_or("text/html").trim();
                    (k.clone(), format!("{mime}; charset=utf-8").into())
                }
                false => (k.clone(), v.clone().into()),
            })
            .collect();
        json!({"url": f.response_url, "status": f.status, "headers": headers, "body": self.text})
    }
}
