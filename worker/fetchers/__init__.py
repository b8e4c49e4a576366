"""The two fetch engines behind the Fetcher port: plain HTTP and a real browser.

Import the engine you need from its module (``worker.fetchers.http``,
``worker.fetchers.browser``); this package does not import them, so the http engine never
loads Playwright.
"""
