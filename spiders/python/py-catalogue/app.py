"""The `catalogue` spider in Python: a shop's products as data records,
picked with CSS selectors the host answers (see spiders/catalogue)."""

from spinneret import Item, Record, Request, Spider, export


def price(printed):
    """A printed price (``£12.50``) as a number."""
    return float(printed.strip().lstrip("£"))


class Catalogue(Spider):
    def parse(self, response):
        sku = response.css("article.product::attr(data-sku)").get()
        if sku is not None:
            def text(query):
                return (response.css(query).get() or "").strip()

            yield Record(
                sku=sku,
                name=text("article.product h1::text"),
                price=price(text(".price::text")),
                in_stock=bool(response.select(".stock.in")),
                description=text(".description p::text"),
            )
        elif response.select("table.prices tbody tr"):
            cells = [response.css(f"table.prices td.{c}::text").getall() for c in ("sku", "name", "price")]
            for sku, name, p in zip(*cells):
                yield Record(sku=sku, name=name, price=price(p))
        else:
            for href in response.css("li.product a::attr(href)").getall():
                yield Request(href)
            for href in response.css("a[rel=next]::attr(href)").getall():
                yield Request(href)
        yield Item()


Parser = export(Catalogue)
