"""Files in any S3-compatible service (boto3): ``S3Storage(client, bucket, prefix)`` keeps
the object ``{prefix}{group}/{name}``; ``resolve.open_storage`` gives each area its prefix
(``{S3_PREFIX}outputs/``...).

A save streams: the chunks go up as they come (one PUT for a small file, a multipart upload
of ``PART_BYTES`` parts for a big one, one part in memory at a time), and S3 makes an object
visible only once it is whole. A read streams the object's body. Copies are server-side.
Every boto3 or botocore error becomes ``errors.StorageFailed`` whose message names the
operation and S3's error code, never the endpoint or a credential; a missing object is None.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import urllib3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from comfygate.errors import StorageFailed
from comfygate.storage.base import StoredFile, require_valid, valid
from comfygate.storage.files import content_type

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0  # a TCP (and TLS) connect to S3
READ_TIMEOUT_S = 30.0  # one socket read from S3
MAX_ATTEMPTS = 3  # botocore's "standard" retries: throttling, 5xx and connection errors
MAX_CONNECTIONS = 50  # outputs streamed at once before connections are not kept for reuse
PART_BYTES = 8 * 1024 * 1024  # files past this are multipart uploads of parts this size
_CHUNK = 64 * 1024
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


def make_client(endpoint_url: str | None = None) -> S3Client:
    """An S3 client with explicit timeouts and standard retries. Credentials and region come
    from boto3's usual chain (AWS_ACCESS_KEY_ID..., ~/.aws, an instance role)."""
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=MAX_CONNECTIONS,
        signature_version="s3v4",
        # Another S3 than AWS's usually wants the bucket in the path, not in the host name.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        # Checksums only where S3 requires them: newer boto3 otherwise sends trailing
        # checksums (aws-chunked bodies) that several S3-compatible services do not accept.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session of its own: boto3's default one is not safe to share between threads.
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def _failed(operation: str, exc: Exception) -> StorageFailed:
    log.warning("S3 %s failed: %s", operation, type(exc).__name__)
    context = exc.__context__  # boto3's upload wraps S3's answer in an S3UploadFailedError
    if not isinstance(exc, ClientError) and isinstance(context, ClientError):
        exc = context
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "unknown")
        return StorageFailed(f"output storage (S3) refused {operation}: {code}")
    if isinstance(exc, NoCredentialsError):
        return StorageFailed("output storage (S3): no credentials found (boto3's chain)")
    return StorageFailed(f"output storage (S3) cannot be reached ({type(exc).__name__})")


def _missing(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _MISSING


# urllib3's own: a body read can end in one botocore does not translate.
_ERRORS = (BotoCoreError, ClientError, Boto3Error, urllib3.exceptions.HTTPError)


class _ChunkReader(io.RawIOBase):
    """A file-like reader over an iterator of chunks, counting what it gave."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = memoryview(b"")
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        self.count += n
        return n


class S3File:
    """An open stored object (``base.Opened``): its body, streamed."""

    def __init__(self, body: Any, size: int, content_type: str, etag: str | None) -> None:
        self._body = body
        self.size = size
        self.content_type = content_type
        self.etag = etag

    def chunks(self, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        while chunk := self.read(chunk_size):
            yield chunk

    def read(self, n: int = -1) -> bytes:
        try:
            return bytes(self._body.read(None if n < 0 else n))
        except _ERRORS as exc:
            raise _failed("a read", exc) from None

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> S3File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Storage:
    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, group: str, name: str) -> str:
        return f"{self.prefix}{group}/{name}"

    def save(self, group: str, name: str, chunks: Iterable[bytes]) -> int:
        require_valid(group, name)
        reader = _ChunkReader(chunks)
        # BufferedReader fills each read whole, so every part but the last is PART_BYTES.
        source = io.BufferedReader(reader, buffer_size=_CHUNK)
        config = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, use_threads=False
        )
        try:
            self.client.upload_fileobj(
                source,
                self.bucket,
                self._key(group, name),
                ExtraArgs={"ContentType": content_type(name)},
                Config=config,
            )
        except _ERRORS as exc:
            raise _failed("an upload", exc) from None
        return reader.count

    def prepare(self, group: str) -> None:
        require_valid(group)  # a bucket has no folders to make

    def save_file(self, group: str, name: str, source: str) -> int:
        try:
            fh = open(source, "rb")  # noqa: SIM115 - closed once the upload has read it
        except OSError:
            raise FileNotFoundError(f"no file {name} to store") from None
        with fh:
            return self.save(group, name, iter(lambda: fh.read(_CHUNK), b""))

    def open(self, group: str, name: str) -> S3File | None:
        if not valid(group, name):
            return None
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(group, name))
        except _ERRORS as exc:
            if _missing(exc):
                return None
            raise _failed("a download", exc) from None
        etag = got.get("ETag")
        return S3File(
            got["Body"],
            got["ContentLength"],
            got.get("ContentType") or content_type(name),
            etag.strip('"') if etag else None,
        )

    def stat(self, group: str, name: str) -> StoredFile | None:
        if not valid(group, name):
            return None
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(group, name))
        except _ERRORS as exc:
            if _missing(exc):
                return None
            raise _failed("a lookup", exc) from None
        return StoredFile(head["ContentLength"], head.get("ContentType") or content_type(name))

    def copy(self, source_group: str, name: str, target_group: str) -> None:
        require_valid(source_group, name)
        require_valid(target_group, name)
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._key(target_group, name),
                CopySource={"Bucket": self.bucket, "Key": self._key(source_group, name)},
            )
        except _ERRORS as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no stored file {name}") from None
            raise _failed("a copy", exc) from None

    def delete_group(self, group: str) -> None:
        require_valid(group)
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}{group}/"
            )
            for page in pages:  # at most 1,000 keys a page, what one delete_objects takes
                keys: list[ObjectIdentifierTypeDef] = [
                    {"Key": o["Key"]} for o in page.get("Contents", []) if "Key" in o
                ]
                if keys:
                    done = self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                    )
                    if done.get("Errors"):  # a 200 that names the keys it could not delete
                        code = done["Errors"][0].get("Code", "unknown")
                        raise StorageFailed(f"output storage (S3) refused a delete: {code}")
        except _ERRORS as exc:
            raise _failed("a delete", exc) from None

    def presigned_url(self, group: str, name: str, expires_s: int) -> str | None:
        if not valid(group, name):
            return None
        try:
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(group, name)},
                ExpiresIn=expires_s,
            )
        except _ERRORS as exc:  # no network here: only missing credentials
            raise _failed("presigning a url", exc) from None
