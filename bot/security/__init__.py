"""What keeps residents' data theirs: channel-scoped identity, session ids and signed links,
bearer checks, private files, masked logs and per-sender rate limits (docs/security.md)."""
