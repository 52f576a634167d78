//! Example item pipeline: adds the page's `<title>` to every HTML result as
//! a `title` field.
use spinneret_sdk::pipeline::{CrawlResult, Field, ItemAction, Pipeline};

struct PageTitle;

impl Pipeline for PageTitle {
    fn process_item(item: &CrawlResult) -> Result<ItemAction, String> {
        let Some(body) = item.field("body") else {
            return Ok(ItemAction::Keep(Vec::new()));
        };
        let Some(title) = title_of(&body) else {
            return Ok(ItemAction::Keep(Vec::new()));
        };
        // `body` arrives as a JSON string; the title keeps its escapes, so
        // re-quoting it yields valid JSON.
        let value = format!("\"{}\"", title.trim());
        Ok(ItemAction::Keep(vec![Field {
            name: "title".into(),
            value,
        }]))
    }
}

/// The text between `<title>` and `</title>`, matched case-insensitively.
fn title_of(html: &str) -> Option<&str> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(&html[start..end])
}

spinneret_sdk::export_pipeline!(PageTitle);
