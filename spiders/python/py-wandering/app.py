"""The `wandering` spider in Python (Scrapy Cluster's WanderingSpider):
yield the page with its step number in `attrs.step`, then follow one
random link."""

import json

from spinneret import Item, Request, Spider, export
from wit_world.imports import host


class Wandering(Spider):
    def parse(self, response):
        step = int(response.meta("step") or 0)
        attrs = json.loads(response.meta("attrs") or "null") or {}
        attrs["step"] = step
        links = response.links()
        followed = []
        if links:
            link = links[host.random() % len(links)]
            yield Request(link.url, meta={"step": step + 1}, walk=True)
            followed.append(link)
        yield Item(links=followed, fields={"attrs": attrs})


Parser = export(Wandering)
