"""An independent Kafka client (confluent-kafka) checking the wire contract
against a running cluster: feed requests, read results and replies, and
compare them field by field with ../shared/spec/wire-contract.md.

Usage: contract_client.py SPEC.json, where SPEC names the brokers, the seed
of a depth-1 crawl and the exact URL set it must return, and a second seed
on another host used for stop. Prints one JSON report line; exits non-zero
on the first contract violation.
"""

import json
import sys
import time
import uuid
from datetime import datetime

from confluent_kafka import Consumer, Producer

WINDOWS = {"900", "3600", "21600", "43200", "86400", "604800", "lifetime"}
checked = 0


def check(cond, what, detail=None):
    global checked
    if not cond:
        raise AssertionError(f"{what}: {json.dumps(detail, sort_keys=True)[:2000]}")
    checked += 1


class Topic:
    """Reads a topic from the beginning, keeping every message."""

    def __init__(self, brokers, topic):
        self.c = Consumer({
            "bootstrap.servers": brokers,
            "group.id": f"py-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        })
        self.c.subscribe([topic])
        self.messages = []

    def wait(self, what, pick, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = pick(self.messages)
            if found is not None:
                return found
            m = self.c.poll(0.1)
            if m is None or m.error():
                continue
            raw = m.value().decode()
            self.messages.append((m.key().decode() if m.key() else None, raw, json.loads(raw)))
        raise AssertionError(f"timed out waiting for {what}")

    def reply(self, uid, timeout=60):
        return self.wait(f"reply {uid}", lambda ms: next(((k, raw, v) for k, raw, v in ms if v.get("uuid") == uid), None), timeout)


def keys_sorted(raw):
    keys = list(json.loads(raw, object_pairs_hook=lambda pairs: [k for k, _ in pairs]))
    return keys == sorted(keys)


def main():
    spec = json.load(open(sys.argv[1]))
    brokers = spec["brokers"]
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    results = Topic(brokers, "demo.crawled_firehose")
    replies = Topic(brokers, "demo.outbound_firehose")

    def feed(obj):
        acked = []
        producer.produce("demo.incoming", json.dumps(obj).encode(), on_delivery=lambda err, msg: acked.append(err))
        producer.flush(30)
        check(acked == [None], "the broker acknowledges a fed request", acked)

    # 1. A depth-1 crawl: exactly the expected pages, every contract field.
    feed({"url": spec["seed"], "appid": "pyapp", "crawlid": "py-crawl", "maxdepth": 1, "attrs": {"k": "v"}})
    expected = set(spec["expected"])
    got = results.wait("every page of the depth-1 crawl", lambda ms: (
        ms if {v["url"] for _, _, v in ms if v.get("crawlid") == "py-crawl"} >= expected else None), 90)
    mine = [(k, raw, v) for k, raw, v in got if v.get("crawlid") == "py-crawl"]
    check({v["url"] for _, _, v in mine} == expected, "the crawl returns exactly the expected URL set",
          sorted({v["url"] for _, _, v in mine} ^ expected))
    for key, raw, r in mine:
        check(key == "py-crawl", "results are keyed by crawlid", key)
        check(keys_sorted(raw), "result keys are sorted", raw[:200])
        for f in ["appid", "crawlid", "url", "response_url", "status_code", "status_msg", "request_headers",
                  "response_headers", "body", "encoding", "links", "attrs", "timestamp", "spiderid", "depth", "fetch_ms"]:
            check(f in r, f"result has `{f}`", sorted(r))
        check(r["appid"] == "pyapp" and r["spiderid"] == "link", "appid and spiderid", r["appid"])
        check(r["attrs"] == {"k": "v"}, "attrs echoed unchanged", r["attrs"])
        check(isinstance(r["status_code"], int) and isinstance(r["status_msg"], str), "status", r["status_code"])
        if r["status_code"] == 200:
            check(r["status_msg"] == "OK", "status_msg is the reason phrase", r["status_msg"])
            check(isinstance(r["body"], str) and len(r["body"]) > 0, "body is text", None)
        if r["status_code"] == 404:
            check(r["status_msg"] == "Not Found", "status_msg is the reason phrase", r["status_msg"])
        for h in ("request_headers", "response_headers"):
            check(all(isinstance(v, list) for v in r[h].values()), f"{h}: name -> list of values", r[h])
        check(all(set(l) == {"url", "text"} for l in r["links"]), "links are {url, text}", r["links"][:3])
        check(r["depth"] in (0, 1), "depth", r["depth"])
        if r["depth"] == 1:
            check(r["links"] == [], "links followed at maxdepth: none", r["links"][:3])
        datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
    seed = next(v for _, _, v in mine if v["depth"] == 0)
    check(len(seed["links"]) > 0, "the seed lists the links it followed", seed["url"])

    # 2. Info on the finished crawl.
    feed({"uuid": "py-info", "appid": "pyapp", "spiderid": "link", "action": "info", "crawlid": "py-crawl"})
    key, raw, info = replies.reply("py-info")
    check(key == "py-info" and keys_sorted(raw), "replies keyed by uuid, keys sorted", key)
    for f in ["uuid", "appid", "server_time", "spiderid", "crawlid", "total_pending", "total_domains", "domains",
              "in_flight", "crawled", "done"]:
        check(f in info, f"info has `{f}`", info)
    check(info["total_pending"] == 0 and info["in_flight"] == 0 and info["done"] is True, "finished crawl info", info)
    check(info["crawled"] == len(mine), "crawled counts delivered results", info)
    check(isinstance(info["server_time"], int), "server_time is Unix seconds", info)

    # 3. Two requests in quick succession get two replies.
    for uid in ("py-twin-1", "py-twin-2"):
        producer.produce("demo.incoming", json.dumps({"uuid": uid, "appid": "pyapp", "spiderid": "link",
                                                      "action": "info"}).encode())
    producer.flush(30)
    app = replies.reply("py-twin-1")[2]
    replies.reply("py-twin-2")
    for f in ["total_pending", "total_domains", "total_crawlids", "crawlids"]:
        check(f in app, f"app-level info has `{f}`", app)
    check("py-crawl" in app["crawlids"], "app-level info lists the crawl", app)

    # 4. Domain config: blacklist the slow seed's host, queue a crawl there, stop it.
    feed({"uuid": "py-bl", "appid": "pyapp", "domain": spec["slow_host"], "action": "blacklist-update"})
    ack = replies.reply("py-bl")[2]
    check(ack["action"] == "blacklist-update" and ack["domain"] == spec["slow_host"] and "error" not in ack,
          "blacklist ack", ack)
    feed({"url": spec["slow_seed"], "appid": "pyapp", "crawlid": "py-stop", "maxdepth": 2})
    deadline = time.time() + 30
    while True:
        feed({"uuid": f"py-wait-{time.time()}", "appid": "pyapp", "spiderid": "link", "action": "info",
              "crawlid": "py-stop"})
        waiting = replies.wait("info on the held crawl", lambda ms: next(
            (v for _, _, v in reversed(ms) if str(v.get("uuid", "")).startswith("py-wait")), None))
        replies.messages = [m for m in replies.messages if not str(m[2].get("uuid", "")).startswith("py-wait")]
        if waiting["total_pending"] == 1:
            break
        check(time.time() < deadline, "the held crawl's seed is queued", waiting)
    check(list(waiting["domains"].values())[0]["total"] == 1, "info domains {total, ...}", waiting)
    feed({"uuid": "py-stop", "appid": "pyapp", "spiderid": "link", "action": "stop", "crawlid": "py-stop"})
    stop = replies.reply("py-stop")[2]
    check(stop["action"] == "stop" and stop["total_purged"] == 1 and stop["crawlid"] == "py-stop"
          and stop["spiderid"] == "link" and stop["appid"] == "pyapp" and isinstance(stop["server_time"], int),
          "stop reply", stop)
    feed({"uuid": "py-nostop", "appid": "pyapp", "spiderid": "link", "action": "stop"})
    check("error" in replies.reply("py-nostop")[2], "a stop without crawlid gets an error", None)
    feed({"uuid": "py-du", "appid": "pyapp", "domain": "example.com", "action": "domain-update",
          "hits": 5, "window": 60, "scale": 0.5})
    ack = replies.reply("py-du")[2]
    check(sorted(ack) == ["action", "appid", "domain", "server_time", "uuid"] and ack["action"] == "domain-update",
          "domain-update ack has exactly the contract's fields", ack)

    # 5. Stats.
    feed({"uuid": "py-sq", "appid": "pyapp", "stats": "queue"})
    q = replies.reply("py-sq")[2]
    check(q["stats"] == "queue" and "total_backlog" in q["queues"], "queue stats", q)
    # Workers write their status counts once a second: ask until they show.
    deadline = time.time() + 15
    for n in range(1000):
        feed({"uuid": f"py-ss{n}", "appid": "pyapp", "stats": "spider"})
        s = replies.reply(f"py-ss{n}")[2]
        sp = s["spiders"]
        if "200" in sp.get("link", {}) or time.time() > deadline:
            break
        time.sleep(0.2)
    check(s["stats"] == "spider" and sp["unique_spider_count"] >= 1 and sp["total_spider_count"] >= 1
          and sp["link"]["count"] >= 1, "spider stats", s)
    check(set(sp["link"]["200"]) == WINDOWS and sp["link"]["200"]["lifetime"] >= 1, "spider status windows", sp["link"])
    feed({"uuid": "py-sa", "appid": "pyapp"})  # stats defaults to "all"
    a = replies.reply("py-sa")[2]
    check(a["stats"] == "all", "stats defaults to all", a)
    for section in ["kafka-monitor", "redis-monitor", "crawler", "rest"]:
        check(section in a, f"all has `{section}`", sorted(a))
    km = a["kafka-monitor"]
    check(set(km) >= {"total", "fail", "plugins", "nodes"} and set(km["total"]) == WINDOWS
          and km["total"]["lifetime"] >= 10 and len(km["nodes"]) == 1, "kafka-monitor stats", km)
    check(set(a["crawler"]) == {"spiders", "machines", "queue"}, "crawler stats", sorted(a["crawler"]))
    check(a["redis-monitor"]["total"]["lifetime"] >= 8, "redis-monitor counts replies", a["redis-monitor"])
    print(json.dumps({"checked": checked, "pages": len(mine)}))


if __name__ == "__main__":
    main()
