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
{body}
<script>document.title = "scripted";</script>
</article></main>
<footer>Footer of the site</footer>
</body></html>"#,
        para = paragraph(n).replace('&', "&amp;"),
        body = variant(n),
    )
}

/// The rest of article `n`: one of four shapes, so that together they
/// hold what a converter must get right.
fn variant(n: usize) -> String {
    match n % 4 {
        0 => format!(
            r#"<ul><li>Point one<ul><li>Nested {n}</li><li>Deeper<ul><li>Third level</li></ul></li></ul></li><li>Point two</li></ul>
<table><tr><th>Key</th><th>Value</th></tr><tr><td>n</td><td>{n}</td></tr></table>
<pre><code>let n = {n};
println!("{{n}}");</code></pre>"#
        ),
        1 => format!(
            r#"<h2>Steps</h2>
<ol><li>Spin the <em>thread</em></li><li>Weave it<ul><li>warp</li><li>weft</li></ul></li><li>Cut at <code>len_{n}</code></li></ol>
<blockquote><p>Silk is strong.</p><p>And <strong>light</strong>.</p></blockquote>
<p><img src="../img/{n}.png" alt="Loom {n}"></p>"#
        ),
        2 => format!(
            r#"<h2>Prices</h2>
<table><thead><tr><th>Item</th><th>Price</th><th>Link</th></tr></thead>
<tbody><tr><td>Silk | raw</td><td>{n}.00</td><td><a href="/shop/{n}">buy</a></td></tr>
<tr><td>Thread</td><td>1.50</td><td></td></tr></tbody></table>
<h3>Code</h3>
<pre>uses ``` fences
and  spaces</pre>"#
        ),
        _ => format!(
            r#"<p>Entities: 1 &lt; 2 &gt; 0 &amp; &copy; {n}.<br>A new line, with *stars* and _lines_.</p>
<p><strong>Bold <em>and italic</em></strong> then <a href="https://example.org/x?a=1&amp;b=2">an outside link</a>.</p>
<hr>
<p>Last words.</p>"#
        ),
    }
}
