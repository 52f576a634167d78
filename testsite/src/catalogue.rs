//! A shop's catalogue for the example spider that extracts (the same on
//! every host): listing pages of [`PER_PAGE`] products with pagination,
//! a detail page per product, and a price list.
//! - `/catalogue/index.html` is listing page 1; `/catalogue/page-<k>.html`
//!   links to page k+1 while there is one (`rel="next"`);
//! - `/catalogue/item-<n>.html` (n < [`PRODUCTS`]): the product's page;
//!   every fourth is served in windows-1252, as old shops still do, and
//!   every fifth is malformed (`sloppy`);
//! - `/catalogue/prices.html`: a table of the first [`PER_PAGE`] products
//!   (SKU, name, price), linked from nowhere.
//!
//! Names and descriptions hold entities and characters outside ASCII, so
//! that extracting them right takes decoding and unescaping.

/// Products in the catalogue.
pub const PRODUCTS: usize = 120;
/// Products on a listing page, and rows in the price list.
pub const PER_PAGE: usize = 50;

/// A product as its pages show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    /// In pence.
    pub pence: u64,
    pub in_stock: bool,
    pub description: String,
}

impl Product {
    /// The price as the pages print it (`12.50`), after a pound sign.
    pub fn price(&self) -> String {
        format!("{}.{:02}", self.pence / 100, self.pence % 100)
    }
}

const COLOURS: [&str; 5] = ["crimson", "ivory", "café noir", "teal", "ochre"];

/// Product `n` (n < [`PRODUCTS`]).
pub fn product(n: usize) -> Product {
    let colour = COLOURS[n % COLOURS.len()];
    Product {
        sku: format!("SKU-{n:04}"),
        name: format!("Silk thread nº {n} \"{colour}\" & co"),
        pence: 150 + (n as u64 * 37) % 2000,
        in_stock: !n.is_multiple_of(3),
        description: format!("A spool of {colour} silk, {} m long.", 50 + n),
    }
}

/// The catalogue page at `path`: its content type and bytes.
pub fn page(path: &str) -> Option<(&'static str, Vec<u8>)> {
    let name = path.strip_prefix("/catalogue/")?;
    let html = |s: String| Some(("text/html; charset=utf-8", s.into_bytes()));
    if name == "index.html" {
        return html(listing(1));
    }
    if name == "prices.html" {
        return html(prices());
    }
    if let Some(k) = number(name, "page-") {
        return (k >= 1 && k <= pages()).then(|| ("text/html; charset=utf-8", listing(k).into()));
    }
    let n = number(name, "item-").filter(|&n| n < PRODUCTS)?;
    let page = detail(n);
    Some(match n % 4 {
        3 => ("text/html; charset=windows-1252", latin1(&page)),
        _ => ("text/html; charset=utf-8", page.into_bytes()),
    })
}

/// Listing pages.
pub fn pages() -> usize {
    PRODUCTS.div_ceil(PER_PAGE)
}

fn number(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?
        .strip_suffix(".html")?
        .parse()
        .ok()
}

/// `s` with `&`, `<`, `>` and `"` as entities (names and descriptions go
/// into text and attributes).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn frame(title: &str, main: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><header><nav><a href=\"/catalogue/index.html\">Catalogue</a></nav></header>\
         <main>{main}</main><footer>The thread shop</footer></body></html>"
    )
}

fn listing(k: usize) -> String {
    let cards: String = ((k - 1) * PER_PAGE..(k * PER_PAGE).min(PRODUCTS))
        .map(|n| {
            let p = product(n);
            format!(
                "<li class=\"product\"><a href=\"/catalogue/item-{n}.html\" title=\"{name}\">\
                 <h3>{name}</h3></a><span class=\"price\">&pound;{price}</span></li>\n",
                name = escape(&p.name),
                price = p.price(),
            )
        })
        .collect();
    let next = match k < pages() {
        true => format!(
            "<a class=\"next\" rel=\"next\" href=\"page-{}.html\">Next &raquo;</a>",
            k + 1
        ),
        false => String::new(),
    };
    frame(
        &format!("Catalogue, page {k}"),
        &format!("<h1>Catalogue</h1><ul class=\"products\">\n{cards}</ul>{next}"),
    )
}

fn detail(n: usize) -> String {
    if n % 5 == 4 {
        return sloppy(n);
    }
    let p = product(n);
    let stock = match p.in_stock {
        true => "<p class=\"stock in\">In stock</p>",
        false => "<p class=\"stock out\">Sold out</p>",
    };
    frame(
        &escape(&p.name),
        &format!(
            "<article class=\"product\" data-sku=\"{sku}\"><h1>{name}</h1>\
             <p class=\"price\">&pound;{price}</p>{stock}\
             <div class=\"description\"><p>{description}</p></div>\
             <p class=\"sku\">SKU: <span>{sku}</span></p></article>",
            sku = p.sku,
            name = escape(&p.name),
            price = p.price(),
            description = escape(&p.description),
        ),
    )
}

/// Product `n`'s page as careless hands write it: upper-case tags,
/// unquoted attributes, end tags left out or stray, an entity without
/// its semicolon, a comment inside the text, wrappers nested deep. A
/// browser (and so the host's parser) reads the same product from it.
fn sloppy(n: usize) -> String {
    let p = product(n);
    let stock = match p.in_stock {
        true => "<P class=\"stock in\">In stock",
        false => "<P class='stock out'>Sold out",
    };
    format!(
        "<!doctype html><HTML lang=en><head><meta charset=utf-8><title>{name}</title>\
         <body><div><div><div class=wrap><section>\n\
         <ARTICLE class=product data-sku={sku}><H1>{name}</h1>\n\
         <p class=price>&pound{price}\n{stock}\n\
         <div class=description><p>{description}<!-- no more --></div>\n\
         <p class=sku>SKU: <span>{sku}</span>\n</article></b></section></div></div>",
        sku = p.sku,
        name = escape(&p.name),
        price = p.price(),
        description = escape(&p.description),
    )
}

fn prices() -> String {
    let rows: String = (0..PER_PAGE)
        .map(|n| {
            let p = product(n);
            format!(
                "<tr><td class=\"sku\">{}</td><td class=\"name\">{}</td><td class=\"price\">{}</td></tr>\n",
                p.sku,
                escape(&p.name),
                p.price()
            )
        })
        .collect();
    frame(
        "Price list",
        &format!(
            "<h1>Price list</h1><table class=\"prices\"><thead><tr><th>SKU</th><th>Name</th>\
             <th>Price (&pound;)</th></tr></thead><tbody>\n{rows}</tbody></table>"
        ),
    )
}

/// `s` in windows-1252, its `<meta charset>` said so. Every character the
/// pages use outside ASCII is in Latin-1, which windows-1252 keeps.
fn latin1(s: &str) -> Vec<u8> {
    s.replace(
        "<meta charset=\"utf-8\">",
        "<meta charset=\"windows-1252\">",
    )
    .replace("<meta charset=utf-8>", "<meta charset=windows-1252>")
    .chars()
    .map(|c| u8::try_from(u32::from(c)).expect("the catalogue writes Latin-1 only"))
    .collect()
}
