"""Benchmarks: parsers, HTTP clients, and (elsewhere) crawl throughput."""
