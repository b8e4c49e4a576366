"""The JSON Schema of workflow files, for editors (``trawl schema``).

Generated from the Structs in ``workflows/spec.py``, so it cannot drift from what the loader
accepts. Each definition's description is its Struct's docstring; each property's is in
``DESCRIPTIONS`` below (kept here rather than in ``Meta`` on the fields, so the types the
validator walks stay plain). The schema cannot express the semantic rules (phase graph,
markers, selector syntax), which only ``trawl validate`` checks. docs/workflows.md is the
reference these descriptions summarise.
"""

from __future__ import annotations

from typing import Any

import msgspec

from workflows import spec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_REGEX = "RE2 syntax (no lookaround or backreferences), searched anywhere unless anchored"

DESCRIPTIONS: dict[type[msgspec.Struct], dict[str, str]] = {
    spec.Workflow: {
        "name": "The workflow's name: 2-63 characters of a-z, 0-9 and '-'. Storing a "
        "workflow again under the same name makes a new version.",
        "start_urls": "Absolute http(s) URLs crawled first, at depth 0, in the start phase. "
        "Those outside the scope are not crawled. Required unless sitemaps are given.",
        "start_phase": "The phase start URLs run in. Default: the first phase.",
        "engine": "How pages are fetched unless a phase says otherwise: browser (Chromium, "
        "runs JavaScript) or http (one plain GET, no JavaScript).",
        "max_depth": "Start URLs are depth 0 and a link is one deeper than its page; links "
        "deeper than this are not followed.",
        "max_pages": "At most this many pages are queued in the execution, start URLs "
        "included. 0 means no limit.",
        "scope": "Which URLs the crawl may visit.",
        "politeness": "How hard one host is hit, per host and execution, across all workers.",
        "fetch": "How a page is requested.",
        "retries": "How often a page that failed for a passing reason (timeout, connection, "
        "429, 5xx, browser crash) is tried.",
        "phases": "The stages of the crawl: every page is fetched in one phase, whose nodes "
        "run on it.",
        "webhook": "Where a signed POST goes when an execution ends (distributed mode; "
        "trawl run sends none). An execution's start may name its own instead.",
        "sitemaps": "Sitemap URLs whose pages are crawled as start URLs are: a list, or a "
        "mapping with urls, robots_txt, phase and max_urls.",
        "link_claims": "When several nodes of one page emit the same URL: first (the first "
        "node's marker wins) or every (each distinct marker is a task of its own).",
        "login": "A login run once per execution before its pages (form POST or browser "
        "script); the cookies it ends with go with every later request of the execution.",
        "proxies": "Proxies requests go through, rotated, with ban detection.",
        "records": "What happens to records as a whole (missing required fields).",
    },
    spec.SitemapSettings: {
        "urls": "Sitemap or sitemap index URLs (XML, gzip or not); their <loc> URLs are "
        "crawled at depth 0.",
        "robots_txt": "Also read the Sitemap: lines of robots.txt of every start URL's host.",
        "phase": "The phase sitemap URLs are crawled in. Default: the start phase.",
        "max_urls": "At most this many URLs taken from the sitemaps. 0: no limit of its own.",
    },
    spec.Login: {
        "url": "The login page: the form is POSTed to it, or the browser opens it.",
        "form": "Form fields POSTed as application/x-www-form-urlencoded; values may be "
        "${secret:NAME}.",
        "script": "JavaScript run in the browser on url instead of a form: a function, "
        "called with the secrets named in secrets as its argument (name -> value).",
        "secrets": "Names of the secrets the script gets; no other is given to it.",
        "success_selector": "CSS selector the page after login must match, else the login failed.",
        "timeout_s": "Seconds the login may take.",
    },
    spec.Proxies: {
        "urls": "Proxy URLs (http://user:pass@host:port); credentials as ${secret:NAME}.",
        "provider_url": "A URL answering the proxy list, one proxy URL per line.",
        "rotation": "round_robin, random, or per_host (a host keeps its proxy until banned).",
        "ban": "What marks a proxy banned for a while.",
    },
    spec.ProxyBan: {
        "statuses": "HTTP statuses that mean the proxy is banned.",
        "selector": "A CSS selector that, when it matches the page, means banned (a CAPTCHA).",
        "cooldown_s": "Seconds a banned proxy rests before it is used again.",
    },
    spec.RecordSettings: {
        "missing_required": "warn: keep a record missing a required field and count a "
        "missing_required warning; drop: leave it out (still counted).",
    },
    spec.Webhook: {
        "url": "An absolute http(s) URL. It gets one JSON POST per execution, signed with "
        "HMAC-SHA256 (Trawl-Signature), retried with backoff until a 2xx.",
    },
    spec.Scope: {
        "allowed_domains": "Sites a URL may be on: a host name or IP address (any scheme "
        "and port), *.domain (the domain and every host under it), host:port (that port "
        "only) or an origin scheme://host[:port]. Default: the origins (scheme, host, "
        "port) of start_urls and sitemaps.",
        "include": f"Regexes; when any are given, a URL must match one. {_REGEX}; matched "
        "against the canonical URL.",
        "exclude": f"Regexes; a URL matching one is out of scope. {_REGEX}; matched against "
        "the canonical URL.",
        "ignore_query_params": "Query parameters removed from every URL before it is "
        "compared or stored; glob patterns such as utm_*, case-sensitive.",
    },
    spec.Politeness: {
        "requests_per_second": "The sustained request rate to one host.",
        "burst": "Requests that may go to one host back to back before the rate applies.",
        "delay_ms": "Milliseconds at least between two requests to one host (a longer "
        "robots.txt Crawl-delay wins when robots.txt is respected).",
        "max_concurrency_per_host": "Requests to one host in flight at once.",
        "respect_robots_txt": "Skip pages robots.txt disallows for the user agent; they are "
        "counted as filtered (robots_txt).",
    },
    spec.FetchSettings: {
        "timeout_s": "Seconds one fetch may take, redirects included; past it the page is "
        "retried (timeout).",
        "user_agent": "The User-Agent of every request, robots.txt included, and the name "
        "robots.txt rules are looked up under.",
        "wait_until": "Browser engine: the page event after which the page counts as loaded "
        "and the nodes run.",
        "block_resources": "Browser engine: kinds of sub-request the page may not make. "
        "[] blocks nothing.",
        "max_body_bytes": "A page larger than this many bytes fails (too_large).",
        "headers": "Headers sent with every request; values may be ${secret:NAME}.",
        "cookies": "Cookies (name -> value) sent to the hosts in scope; values may be "
        "${secret:NAME}.",
    },
    spec.Retries: {
        "max_attempts": "Tries in all, the first included, for a page failing with a "
        "retryable class. 1 never retries.",
        "backoff_s": "Base wait in seconds: backoff_s * 2^(try-1), times a random 0.5-1.5, "
        "at most 300 s; a server's Retry-After is a floor.",
    },
    spec.Phase: {
        "name": "Unique in the workflow; transitions and start_phase refer to it.",
        "engine": "How this phase's pages are fetched. Default: the workflow's engine.",
        "nodes": "Run in order on each fetched page; they share the page's record and links.",
        "transitions": "Tried in order for each link found here; the first match sends it "
        "to its phase, no match keeps it in this one.",
    },
    spec.ExtractNode: {
        "type": "extract: add fields to the page's record.",
        "fields": "Record key -> field: a CSS selector (the text of its first match) or a "
        "mapping with css/xpath, attr, type, regex, default, multiple, absolute_url, "
        "fields, as.",
    },
    spec.Field: {
        "css": "CSS selector of the element holding the value. Nested fields search inside "
        "their parent's element.",
        "xpath": "XPath 1.0 instead of css (not both); may select strings such as "
        "//title/text() or //a/@href. Nested, a leading / is relative.",
        "attr": "Read this attribute of the element instead of its text.",
        "type": "Convert the value: string (whitespace collapsed), int, float, bool, or "
        "html (the inner HTML). A value that does not convert is null and a warning.",
        "regex": "Keep part of the text: the named group 'value' (?P<value>...) if the "
        f"pattern has one, else the whole match. {_REGEX}.",
        "default": "The value when the field would be null (nothing matched, no attribute, "
        "no regex match, no conversion).",
        "multiple": "A list with a value for every match (nulls left out) instead of the "
        "first match's value; no match gives [] (or the default).",
        "absolute_url": "Resolve the value against the page's URL (or its <base href>).",
        "fields": "Sub-fields evaluated inside the matched element: the value is an object "
        "of them (a list of objects with multiple).",
        "as": "object: with multiple and fields {key, value}, fold the rows into one "
        "object {key: value}.",
        "process": "Text processors applied in order: strip, collapse_whitespace, lower, "
        "upper, {strip_chars: CHARS}, {remove: TEXT}, {replace: [OLD, NEW]}, "
        "{regex_replace: [PATTERN, REPLACEMENT]}, {prefix: TEXT}, {suffix: TEXT}, "
        "{default_if_empty: VALUE}, {split: SEP}, {join: SEP}, {slice: [START, END]}.",
        "required": "Top-level fields only: a record whose value is null, [] or {} is a "
        "missing_required warning (or dropped, see records.missing_required).",
    },
    spec.ExtractLinksNode: {
        "type": "extract_links: emit links for the crawl to follow.",
        "selector": "CSS selector of the elements that carry links.",
        "attr": "The attribute holding the URL.",
        "marker": "Label carried by every link this node emits; transitions and filters "
        "select links by it.",
        "limit": "At most this many distinct links from one page (0 emits none). Default: "
        "no limit.",
    },
    spec.FilterNode: {
        "type": "filter: drop links emitted before it in the phase; a link is kept when "
        "every condition given holds.",
        "markers": "Keep links carrying one of these markers (a link without a marker is dropped).",
        "min_depth": "Keep links at least this deep (a link is one deeper than its page).",
        "max_depth": "Keep links at most this deep.",
        "include": f"Regexes; when any are given, keep links whose URL matches one. {_REGEX}.",
        "exclude": f"Regexes; drop links whose URL matches one. {_REGEX}.",
    },
    spec.ScriptNode: {
        "type": "script: run JavaScript in the live page (browser engine only).",
        "code": "A JavaScript expression evaluated in the page; a function is called and a "
        "promise awaited.",
        "as": "emit: value only, and required there: the record key the result is stored under.",
        "emit": "value: store the result (as JSON) in the record; links: follow the list of "
        "URL strings it returns.",
        "marker": "emit: links only: the marker of the links it emits.",
        "limit": "emit: links only: at most this many distinct links. Default: no limit.",
        "timeout_s": "Seconds the code may run; past it the page fails (script_timeout).",
    },
    spec.Transition: {
        "when": "Conditions a link must all meet; {} matches every link.",
        "to": "The phase a matching link is crawled in.",
    },
    spec.When: {
        "marker": "The link carries this marker (a node of the phase must emit it).",
        "url": f"A regex searched in the link's canonical URL. {_REGEX}.",
        "min_depth": "The link is at least this deep.",
        "max_depth": "The link is at most this deep.",
    },
}


def workflow_json_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) describing a workflow document."""
    generated = msgspec.json.schema(spec.Workflow)
    by_name = {cls.__name__: table for cls, table in DESCRIPTIONS.items()}
    for name, definition in generated.get("$defs", {}).items():
        table = by_name.get(name, {})
        properties = definition.get("properties", {})
        for key, schema in properties.items():
            if key in table:
                properties[key] = {"description": table[key], **schema}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Trawl workflow",
        "description": "A crawl as phases of nodes joined by transitions; the language is "
        "described in docs/workflows.md.",
        **generated,
    }
