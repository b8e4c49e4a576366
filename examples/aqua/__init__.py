"""Aqua: a small aquarium shop generated from a seed, its server, and the workflow crawling it.

The site is built in memory (never committed as pages) so that the expected answer of a
crawl is computed from the same model that wrote the HTML. Import from
``examples.aqua.generate`` and ``examples.aqua.server``; this package imports neither, so
that ``python -m examples.aqua.server`` runs without a double-import warning.
"""
