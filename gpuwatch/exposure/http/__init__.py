"""The HTTP/1.1 signal API: an asyncio protocol on httptools, routes, precomputed responses."""
