"""Push exported usage to a billing endpoint over HTTP, with retries and idempotency keys.

* CloudEvents go in batches (``application/cloudevents-batch+json``, a JSON array: OpenMeter's
  ``POST /api/v1/events``); a batch's ``Idempotency-Key`` is derived from the ids it carries.
* Stripe meter events go one per request, form-encoded as Stripe's ``POST
  /v1/billing/meter_events`` takes them; the ``Idempotency-Key`` is the event's identifier.

A request is retried (exponential backoff, ``Retry-After`` honoured) on a network error, a lost
response, 408, 409, 429 and 5xx, ALWAYS with the same body and key, so a receiver that applied it
before the response was lost recognises the retry; ids inside the payload (CloudEvent ``id``,
Stripe ``identifier``) make even a receiver without idempotency keys count each record once.
Any other answer, or running out of retries, is an ``UpstreamError`` naming how far it got; the
push can be re-run from the start, since every record is deduplicated by its id.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

import httpx
import msgspec

from feedserver.errors import UpstreamError
from feedserver.metering.exports import CloudEvent, StripeMeterEvent

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF = 30.0
_encoder = msgspec.json.Encoder()


class PushResult(msgspec.Struct, kw_only=True):
    records: int = 0
    requests: int = 0  # HTTP requests made, retries included
    retries: int = 0


class Pusher:
    def __init__(self, client: httpx.Client, url: str, *, token: str | None = None,
                 retries: int = 5, backoff: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.url = url
        self.token = token
        self.retries = max(0, retries)
        self.backoff = backoff
        self.sleep = sleep
        self.result = PushResult()

    def _post(self, body: bytes, content_type: str, key: str, records: int) -> None:
        headers = {"Content-Type": content_type, "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.result.retries += 1
            self.result.requests += 1
            wait = self.backoff * 2 ** attempt
            try:
                response = self.client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # refused, reset, timed out, response lost
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    self.result.records += records
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRY_STATUSES:
                    raise UpstreamError(
                        f"usage push to {self.url} refused after {self.result.records} "
                        f"records: {problem}", status=response.status_code)
                wait = max(wait, _retry_after(response))
            if attempt < self.retries:
                self.sleep(min(wait, MAX_BACKOFF))
        raise UpstreamError(f"usage push to {self.url} failed after {self.retries + 1} "
                            f"attempts ({self.result.records} records sent): {problem}")

    def cloudevents(self, events: Sequence[CloudEvent], batch_size: int) -> PushResult:
        size = max(1, batch_size)
        for i in range(0, len(events), size):
            batch = events[i : i + size]
            key = "fs-" + hashlib.sha256("\n".join(e.id for e in batch).encode()).hexdigest()
            self._post(_encoder.encode(list(batch)), "application/cloudevents-batch+json",
                       key[:64], len(batch))
        return self.result

    def stripe(self, events: Sequence[StripeMeterEvent]) -> PushResult:
        for event in events:
            form = {
                "event_name": event.event_name,
                "payload[stripe_customer_id]": event.payload.stripe_customer_id,
                "payload[value]": event.payload.value,
                "identifier": event.identifier,
                "timestamp": str(event.timestamp),
            }
            body = str(httpx.QueryParams(form)).encode()
            self._post(body, "application/x-www-form-urlencoded", event.identifier, 1)
        return self.result


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(MAX_BACKOFF, max(0.0, float(value)))
    except ValueError:
        return 0.0
