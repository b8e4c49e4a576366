"""Scrapy 2.x as a user would write it: a CrawlSpider, a LinkExtractor, a JSONL feed.

    python scrapy_crawl.py START_URL OUT.jsonl [--concurrency 32]
"""
import argparse
from urllib.parse import urlsplit

from scrapy.crawler import CrawlerProcess
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


class DocsSpider(CrawlSpider):
    name = "docs"
    rules = (Rule(LinkExtractor(), callback="parse_page", follow=True),)

    def __init__(self, start: str, **kwargs):
        self.start_urls = [start]
        self.allowed_domains = [urlsplit(start).hostname]
        super().__init__(**kwargs)

    def parse_start_url(self, response):
        return self.parse_page(response)

    def parse_page(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("start")
    parser.add_argument("out")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    process = CrawlerProcess(
        settings={
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "ROBOTSTXT_OBEY": False,
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
            "FEEDS": {args.out: {"format": "jsonlines", "encoding": "utf8", "overwrite": True}},
        }
    )
    process.crawl(DocsSpider, start=args.start)
    process.start()
