"""The `link` spider in Python: the page as an item, and every link the
crawl's filters allow while depth < maxdepth."""

from spinneret import Spider, export, follow_all


class Link(Spider):
    def parse(self, response):
        return follow_all(response)


Parser = export(Link)
