"""Collecting real data politely: kworb.net chart pages and 30 s previews (``benchmark collect``).

- :mod:`.client`: the one HTTP client (httpx) with per-host rate limits, back-off with jitter,
  ``Retry-After``, a request budget and a descriptive User-Agent.
- :mod:`.layout`: every path the collectors write under a data dir.
- :mod:`.kworb`: ``collect charts --source kworb`` (fetch, keep, read strictly, ingest).
- :mod:`.sources`: the preview services (Deezer, iTunes Search API, Spotify Web API), a registry.
- :mod:`.matching`: the match score, version markers, duration check and decision.
- :mod:`.clips`: checking a downloaded body and storing it as a clip our decoder reads.
- :mod:`.previews`: ``collect previews`` (decide, download, record, resume).

See docs/collect.md.
"""
