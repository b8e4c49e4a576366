"""Benchmarks: Trawl beside its peers (``bench.run``), memory over a long crawl
(``bench.memory``) and distributed mode's throughput and backend round trips
(``bench.distributed``); bench/README.md says what each answers and how it is run."""
