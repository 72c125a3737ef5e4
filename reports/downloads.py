"""Serving a report file to the one who may have it, with memory that does not grow with the file.

A stored file on the filesystem is streamed a block at a time (an async iterator under ASGI, so
Django does not read it into a list first, and each block is sent only once the server has taken
the last: uvicorn waits for the socket to drain before it accepts more), or handed to the proxy in
front (REPORTS_DOWNLOAD_OFFLOAD: nginx's X-Accel-Redirect, Apache's or Caddy's X-Sendfile) once the
owner check has passed. A file in S3 is a redirect to a short-lived signed URL.

Each user has at most REPORTS_DOWNLOADS_PER_USER downloads streaming at once, counted in Redis for
all web processes (a lease per download, renewed while it streams, so a dead process frees its
slots); past it, a 429. `StalledClients` drops a client that takes nothing for
REPORTS_DOWNLOAD_STALL_SECONDS: it holds a connection and no more than the server's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestAborted
from django.core.files.storage import FileSystemStorage
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.utils.http import content_disposition_header
from redis.exceptions import RedisError

from . import conf, queues
from .files import download_filename, reports_storage
from .writers import FORMATS

logger = logging.getLogger(__name__)
BLOCK = 1 << 16
LEASE_SECONDS = 60.0
OFFLOAD_HEADERS = {"x-accel-redirect": "X-Accel-Redirect", "x-sendfile": "X-Sendfile"}


class DownloadSlot:
    """One of a user's concurrent downloads: a member of a Redis sorted set scored by when its lease
    ends. With Redis away, downloads are not counted (they still stream, bounded in memory)."""

    def __init__(self, user_id: int):
        self.key = f"reports:downloads:{int(user_id)}"
        self.token = uuid.uuid4().hex
        self.renewed = 0.0
        self.held = False

    def acquire(self) -> bool:
        """Take a slot; False when the user has REPORTS_DOWNLOADS_PER_USER downloads streaming already."""
        now = time.time()
        try:
            pipe = queues.redis_connection().pipeline()
            pipe.zremrangebyscore(self.key, "-inf", now)
            pipe.zadd(self.key, {self.token: now + LEASE_SECONDS})
            pipe.zcard(self.key)
            pipe.expire(self.key, int(LEASE_SECONDS) + 1)
            count = pipe.execute()[2]
        except RedisError:
            logger.warning("Redis is unreachable: this download is not counted against its user's limit.")
            return True
        self.held, self.renewed = True, now
        if count > conf.REPORTS_DOWNLOADS_PER_USER:
            self.release()
            return False
        return True

    def due(self) -> bool:
        """Whether the lease should be renewed now: every third of it, while the download streams."""
        return self.held and time.time() - self.renewed >= LEASE_SECONDS / 3

    def renew(self) -> None:
        now = self.renewed = time.time()
        # With Redis away the lease runs out: at worst the user may start one more download.
        with contextlib.suppress(RedisError):
            connection = queues.redis_connection()
            connection.zadd(self.key, {self.token: now + LEASE_SECONDS}, xx=True)
            connection.expire(self.key, int(LEASE_SECONDS) + 1)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        # With Redis away it expires with its lease.
        with contextlib.suppress(RedisError):
            queues.redis_connection().zrem(self.key, self.token)


def busy(retry_after: int = 10) -> HttpResponse:
    limit = conf.REPORTS_DOWNLOADS_PER_USER
    message = f"You have {limit} downloads in progress already; wait for one to finish."
    response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


def iter_blocks(fh, size: int = BLOCK) -> Iterator[bytes]:
    with fh:
        while block := fh.read(size):
            yield block


def renewing(blocks: Iterable[bytes], slot: DownloadSlot) -> Iterator[bytes]:
    """The blocks, the slot's lease renewed as they go (a synchronous server)."""
    for block in blocks:
        if slot.due():
            slot.renew()
        yield block


async def async_blocks(blocks: Iterable[bytes], slot: DownloadSlot) -> AsyncIterator[bytes]:
    """A synchronous iterator of blocks (a file being read, or a file being put together) as an async
    one, each block made off the event loop, the slot's lease renewed as they go: Django under ASGI
    would otherwise read all of it into a list before the first byte went out."""
    iterator = iter(blocks)
    step = sync_to_async(next, thread_sensitive=False)
    try:
        while (block := await step(iterator, None)) is not None:
            if slot.due():
                await sync_to_async(slot.renew, thread_sensitive=False)()
            yield block
    finally:
        close = getattr(iterator, "close", None)
        if close:
            await sync_to_async(close, thread_sensitive=False)()


def stream(
    request, blocks: Iterator[bytes], *, slot: DownloadSlot, content_type: str, filename: str, size: int | None
) -> StreamingHttpResponse:
    """A response that sends `blocks` as the client takes them, and frees the slot when it ends."""
    content = async_blocks(blocks, slot) if isinstance(request, ASGIRequest) else renewing(blocks, slot)
    response = StreamingHttpResponse(content, content_type=content_type)
    if size is not None:
        response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response._resource_closers.append(slot.release)
    return response


def stored_file(request, job) -> HttpResponse:
    """The job's stored file, for its owner (checked by the caller): streamed, offloaded or redirected."""
    filename = download_filename(job)
    content_type = FORMATS[job.format].content_type
    storage = reports_storage()
    if not isinstance(storage, FileSystemStorage):
        return HttpResponseRedirect(signed_url(storage, job, filename, content_type))
    offload = conf.REPORTS_DOWNLOAD_OFFLOAD
    if offload:
        return offloaded(job, storage, offload, filename, content_type)
    slot = DownloadSlot(job.owner_id)
    if not slot.acquire():
        return busy()
    fh = storage.open(job.file.name, "rb")
    return stream(request, iter_blocks(fh), slot=slot, content_type=content_type, filename=filename, size=job.file.size)


def offloaded(job, storage: FileSystemStorage, offload: str, filename: str, content_type: str) -> HttpResponse:
    """An empty response that tells the proxy which file to send: X-Accel-Redirect names an internal
    location (REPORTS_DOWNLOAD_OFFLOAD_PREFIX + the file's name), X-Sendfile the file's path."""
    response = HttpResponse(content_type=content_type)
    if offload == "x-accel-redirect":
        target = conf.REPORTS_DOWNLOAD_OFFLOAD_PREFIX.rstrip("/") + "/" + job.file.name.lstrip("/")
    else:
        target = storage.path(job.file.name)
    response[OFFLOAD_HEADERS[offload]] = target
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def signed_url(storage, job, filename: str, content_type: str) -> str:
    """A short-lived URL straight to the object, carrying the filename and type (S3)."""
    return storage.url(
        job.file.name,
        parameters={
            "ResponseContentDisposition": content_disposition_header(True, filename),
            "ResponseContentType": content_type,
        },
    )


class StalledClients:
    """ASGI middleware for HTTP: a response whose client takes nothing for REPORTS_DOWNLOAD_STALL_SECONDS
    is abandoned and its connection closed. (The server holds a send until the socket drains; without
    this a client that stops reading would hold its connection, and the file open, for ever.)"""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        timeout = conf.REPORTS_DOWNLOAD_STALL_SECONDS

        async def send_in_time(message):
            try:
                await asyncio.wait_for(send(message), timeout)
            except TimeoutError:
                logger.warning("Dropped a client that took nothing for %s s: %s", timeout, scope.get("path"))
                raise RequestAborted from None

        # The server closes a connection whose response ended unfinished.
        with contextlib.suppress(RequestAborted):
            await self.application(scope, receive, send_in_time if timeout else send)
