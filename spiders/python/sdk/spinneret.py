"""Write Spinneret spiders in Python, like Scrapy spiders.

A spider is a class with ``parse(self, response)`` that yields (or returns)
``Request`` and ``Item`` objects, and ``Record(name=..., price=...)`` data
records, sent apart from the page's result::

    from spinneret import Spider, Request, Item, export

    class Headlines(Spider):
        def parse(self, response):
            links = response.links()
            for link in links[:5]:
                yield Request(link.url)
            yield Item(links=links, fields={"kind": "headline"})

    Parser = export(Headlines)

``response`` is the host's page: ``url()``, ``response_url()``, ``status()``,
``header(name)``, ``headers()``, ``body()``, ``text()``, ``depth()``,
``maxdepth()``, ``meta(name)`` and ``links()`` (extracted natively by the
host with the crawl's filters), and CSS selectors answered by the host
as parsel answers them: ``response.css("h2 a::attr(href)").getall()``,
``response.css("title::text").get()``; ``response.select(css)`` gives
the matched elements whole (tag, text, texts, attrs, html). Build with
``just guests``.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types


class Request:
    """A request to crawl next. ``priority=None`` is the parent's minus 10.
    ``walk=True`` marks the page's step of a walk (one link per page),
    bounded by ``crawl.max_walk_steps`` instead of ``maxdepth``."""

    def __init__(self, url, priority=None, spiderid=None, method=None, headers=(),
                 body=None, meta=None, dont_filter=False, walk=False):
        self.url, self.priority, self.spiderid, self.method = url, priority, spiderid, method
        self.headers, self.body, self.meta, self.dont_filter = list(headers), body, dict(meta or {}), dont_filter
        if walk:
            self.meta["walk"] = True

    def _wit(self):
        return types.Output_Request(types.Request(
            url=self.url, priority=self.priority, spiderid=self.spiderid, method=self.method,
            headers=[(k, v) for k, v in self.headers], body=self.body,
            meta=[types.Field(name=k, value=json.dumps(v)) for k, v in self.meta.items()],
            dont_filter=self.dont_filter))


class Item:
    """The page's result: the links it followed, and fields added to it."""

    def __init__(self, links=(), fields=None):
        self.links, self.fields = list(links), fields or {}

    def _wit(self):
        return types.Output_Item(types.Item(
            links=self.links,
            fields=[types.Field(name=k, value=json.dumps(v)) for k, v in self.fields.items()]))


class Record:
    """A data record drawn from the page: its fields (any JSON values),
    sent apart from the page's result, on ``<prefix>.items``."""

    def __init__(self, **fields):
        self.fields = fields

    def _emit(self, response):
        response.emit([types.Field(name=k, value=json.dumps(v)) for k, v in self.fields.items()])


class SelectorList(list):
    """The strings a ``response.css`` query picked, as parsel's."""

    def get(self, default=None):
        return self[0] if self else default

    def getall(self):
        return list(self)


def _split(query):
    """A query's CSS and what it picks: ``::text``, ``::attr(name)``, or
    the outer HTML."""
    q = query.rstrip()
    if q.endswith("::text"):
        return q[: -len("::text")], ("text", None)
    css, sep, rest = q.rpartition("::attr(")
    if sep and rest.endswith(")"):
        return css, ("attr", rest[:-1].strip())
    return q, ("html", None)


def _css(response, query):
    css, (pick, name) = _split(query)
    out = SelectorList()
    for e in response.select(css):
        if pick == "text":
            out.extend(e.texts)
        elif pick == "attr":
            out.extend(v for k, v in e.attrs if k == name)
        else:
            out.append(e.html)
    return out


# parsel's call, on the host's response.
types.Response.css = _css


class Spider:
    """Override ``parse``."""

    def parse(self, response):
        raise NotImplementedError


def follow_all(response):
    """The link spider's rule: a request per link while depth < maxdepth."""
    if response.depth() >= response.maxdepth():
        return [Item()]
    links = response.links()
    return [Request(link.url) for link in links] + [Item(links=links)]


def export(spider_class):
    """The component's `parser` export for ``spider_class``."""
    spider = spider_class()

    class Parser(exports.Parser):
        def parse(self, response):
            try:
                out = []
                for o in spider.parse(response) or []:
                    if isinstance(o, Record):
                        o._emit(response)
                    else:
                        out.append(o._wit())
                return out
            except Exception as e:  # the page gets a result with this error
                raise Err(f"{type(e).__name__}: {e}")

    return Parser
