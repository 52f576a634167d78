//! Articles for the extraction tests (the same on every host): pages as a
//! publishing system writes them, with head metadata (title, description,
//! `og:*`, canonical, language), JSON-LD, and a header, navigation and
//! footer around the main content: a nested list, a table, code.
//! - `/articles/index.html` links to every article;
//! - `/articles/<n>.html` (n < [`ARTICLES`]) links to the next one.

/// Articles on the site.
pub const ARTICLES: usize = 20;

/// The article or index at `path`, if there is one.
pub fn page(path: &str) -> Option<String> {
    let name = path.strip_prefix("/articles/")?;
    if name == "index.html" {
        let items: String = (0..ARTICLES)
            .map(|n| format!("<li><a href=\"/articles/{n}.html\">Article {n}</a></li>"))
            .collect();
        return Some(format!(
            "<!doctype html><html lang=\"en\"><head><title>Articles</title></head>\
             <body><main><h1>Articles</h1><ul>{items}</ul></main></body></html>"
        ));
    }
    let n: usize = name.strip_suffix(".html")?.parse().ok()?;
    (n < ARTICLES).then(|| article(n))
}

/// The words article `n`'s main content says (its paragraph).
pub fn paragraph(n: usize) -> String {
    format!("Article {n} is about silk & thread, number {n}.")
}

fn article(n: usize) -> String {
    let next = (n + 1) % ARTICLES;
    format!(
        r#"<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><title>Article {n} &amp; more</title>
<meta name="description" content="What article {n} says.">
<meta property="og:title" content="Article {n}">
<meta property="og:type" content="article">
<link rel="canonical" href="/articles/{n}.html">
<script type="application/ld+json">{{"@context": "https://schema.org", "@type": "Article", "headline": "Article {n}", "position": {n}}}</script>
<style>nav {{ color: red }}</style>
</head><body>
<header><a href="/articles/index.html">All articles</a></header>
<nav><ul><li><a href="/articles/index.html">Index</a></li><li>Site menu</li></ul></nav>
<main><article>
<h1>Article {n}</h1>
<p>{para} <a href="/articles/{next}.html">Next</a>.</p>
<ul><li>Point one<ul><li>Nested {n}</li></ul></li><li>Point two</li></ul>
<table><tr><th>Key</th><th>Value</th></tr><tr><td>n</td><td>{n}</td></tr></table>
<pre><code>let n = {n};</code></pre>
<script>document.title = "scripted";</script>
</article></main>
<footer>Footer of the site</footer>
</body></html>"#,
        para = paragraph(n).replace('&', "&amp;"),
    )
}
