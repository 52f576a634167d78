"""The `headings` spider in Python: the link spider, plus the page's title,
h1/h2 headings and description picked with CSS selectors the host answers."""

from spinneret import Spider, export, follow_all


class Headings(Spider):
    def parse(self, response):
        title = response.css("title::text").get()
        out = follow_all(response)
        fields = {
            "title": title.strip() if title else None,
            "headings": [e.text.strip() for e in response.select("h1, h2")],
            "description": response.css("meta[name=description]::attr(content)").get(),
        }
        out[-1].fields = {k: v for k, v in fields.items() if v is not None}
        return out


Parser = export(Headings)
