"""Sending webhooks over HTTP, for the delivery workers and inline mode alike.

``dispatch`` builds the Standard Webhooks request (``webhook_request``) and makes
one attempt (``Dispatcher``): timeouts, no redirects, a capped response, httpx's
errors mapped to durian's. ``transport`` is httpx's API on aiohttp's connection
pool with the address guard in the resolver and in every socket it connects.
The only part of the core that imports httpx.
"""
