//! The `catalogue` spider: a shop's products as data records, picked with
//! CSS selectors the host answers. A listing page is followed to its
//! product pages and its next page; a product page becomes one record
//! (sku, name, price, in_stock, description); a price list becomes a
//! record per row. Records go out apart from the pages' results, so a
//! page of fifty products is one page result and fifty records. The same
//! spider is written in Python (`py-catalogue`) and JavaScript
//! (`js-catalogue`).
use spinneret_sdk::spider::{Item, Output, Record, Request, Response, Spider};

struct Catalogue;

impl Spider for Catalogue {
    fn parse(response: &Response) -> Result<Vec<Output>, String> {
        let page = Output::Item(Item::page(Vec::new()));
        if let Some(sku) = response.css("article.product::attr(data-sku)")?.get() {
            let text = |query: &str| -> Result<String, String> {
                Ok(response
                    .css(query)?
                    .get()
                    .unwrap_or_default()
                    .trim()
                    .to_string())
            };
            let in_stock = !response.select(".stock.in")?.is_empty();
            response.emit_record(
                Record::new()
                    .text("sku", sku)
                    .text("name", &text("article.product h1::text")?)
                    .json("price", price(&text(".price::text")?)?)
                    .json("in_stock", in_stock.to_string())
                    .text("description", &text(".description p::text")?),
            )?;
            return Ok(vec![page]);
        }
        let rows = response.select("table.prices tbody tr")?;
        if !rows.is_empty() {
            let cells = |class: &str| response.css(&format!("table.prices td.{class}::text"));
            let (skus, names, prices) = (cells("sku")?.0, cells("name")?.0, cells("price")?.0);
            for ((sku, name), p) in skus.iter().zip(&names).zip(&prices) {
                response.emit_record(
                    Record::new()
                        .text("sku", sku)
                        .text("name", name)
                        .json("price", price(p)?),
                )?;
            }
            return Ok(vec![page]);
        }
        // A listing: its products, then its next page.
        let products = response.css("li.product a::attr(href)")?.getall();
        let next = response.css("a[rel=next]::attr(href)")?.getall();
        let mut out: Vec<Output> = products
            .into_iter()
            .chain(next)
            .map(|href| Output::Request(Request::get(href)))
            .collect();
        out.push(page);
        Ok(out)
    }
}

/// A printed price (`£12.50`) as a JSON number.
fn price(printed: &str) -> Result<String, String> {
    let digits = printed.trim().trim_start_matches('£');
    match digits.parse::<f64>() {
        Ok(_) => Ok(digits.to_string()),
        Err(_) => Err(format!("not a price: {printed:?}")),
    }
}

spinneret_sdk::export_spider!(Catalogue);
