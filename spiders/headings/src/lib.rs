//! The `headings` spider: the `link` spider, plus what a page says it is
//! about, picked with CSS selectors the host answers (`response.css`):
//! its title, its `h1`/`h2` headings and its description, as fields of
//! the page's result.
use spinneret_sdk::json_string;
use spinneret_sdk::spider::{follow_all, Field, Output, Response, Spider};

struct Headings;

impl Spider for Headings {
    fn parse(response: &Response) -> Result<Vec<Output>, String> {
        let title = response
            .css("title::text")?
            .get()
            .map(|t| json_string(t.trim()));
        // Whole elements: a heading's text includes its children's.
        let headings: Vec<String> = response
            .select("h1, h2")?
            .into_iter()
            .map(|e| json_string(e.text.trim()))
            .collect();
        let description = response
            .css("meta[name=description]::attr(content)")?
            .get()
            .map(json_string);
        let fields = [
            ("title", title),
            ("headings", Some(format!("[{}]", headings.join(",")))),
            ("description", description),
        ];
        let mut out = follow_all(response);
        if let Some(Output::Item(page)) = out.last_mut() {
            page.fields
                .extend(fields.into_iter().filter_map(|(name, value)| {
                    value.map(|value| Field {
                        name: name.to_string(),
                        value,
                    })
                }));
        }
        Ok(out)
    }
}

spinneret_sdk::export_spider!(Headings);
