"""Example workflows and the sites they crawl."""
