"""Image inputs from clients: checking image bytes, decoding data: URIs, fetching URLs safely.

Standalone building blocks: ``images`` (``check_image``, ``decode_data_uri``) and ``fetch``
(``fetch_url`` with ``FetchPolicy``). Every refusal is a ``ValidationFailed`` naming the field.
"""
