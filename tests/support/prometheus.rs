//! A real Prometheus server (Debian's package) for analysis tests, scraping an exporter the test controls.
