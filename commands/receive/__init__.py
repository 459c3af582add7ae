"""``moments receive``: a local webhook receiver that verifies Standard Webhooks signatures.

:mod:`.verify` is pure (verification against the secrets, the printed line, the counts);
:mod:`.serve` is the aiohttp server on loopback.
"""
