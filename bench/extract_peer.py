"""The peers of `spinneret-bench`'s extraction section, on the same pages:
parsel (the selectors Scrapy spiders use; lxml underneath) with the first
one and ten selectors, each match gathered as the host gathers it (tag,
text, own text nodes, attributes, outer HTML), and markdownify. Reads
{"pages": [html], "selectors": [css], "rounds": n}; prints µs per page."""

import json
import sys
import time

from markdownify import markdownify
from parsel import Selector


def gather(html, selectors):
    sel = Selector(text=html)
    for css in selectors:
        for e in sel.css(css):
            (e.root.tag, e.xpath("string()").get(), e.xpath("text()").getall(), dict(e.attrib), e.get())


def per_page(pages, rounds, f):
    for p in pages:
        f(p)
    started = time.perf_counter()
    for _ in range(rounds):
        for p in pages:
            f(p)
    return (time.perf_counter() - started) * 1e6 / (rounds * len(pages))


def main():
    job = json.load(open(sys.argv[1]))
    pages, selectors, rounds = job["pages"], job["selectors"], job["rounds"]
    print(json.dumps({
        "parsel_1": per_page(pages, rounds, lambda p: gather(p, selectors[:1])),
        "parsel_10": per_page(pages, rounds, lambda p: gather(p, selectors)),
        "markdownify": per_page(pages, rounds, markdownify),
    }))


main()
