"""The output storage contract (storage/base.py), run against every implementation: ``local``
(a directory) and ``s3`` (a real S3 API, s3rver). A new storage only joins ``STORAGES``.

Each storage is made as the gateway makes it, by ``open_storage(settings, area)``."""

from __future__ import annotations

import os
import resource
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from comfygate.config import Settings
from comfygate.errors import StorageFailed
from comfygate.storage.base import OutputStorage
from comfygate.storage.resolve import open_storage
from comfygate.storage.s3 import PART_BYTES
from tests.helpers import wait_for
from tests.processes import S3Server

STORAGES = ["local", "s3"]
JOB = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
KEY = JOB + OTHER  # a cache key: 64 hex digits, and JOB is its first half
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def settings_for(kind: str, tmp_path: Path, s3: S3Server | None) -> Settings:
    if kind == "local":
        return Settings(data_dir=tmp_path / "data")
    assert s3 is not None
    return Settings(
        data_dir=tmp_path / "data",
        storage="s3",
        s3_bucket=s3.bucket,
        s3_endpoint_url=s3.url,
        s3_prefix=f"contract-{uuid.uuid4().hex}/",  # each test on its own keys
    )


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> OutputStorage:
    s3 = request.getfixturevalue("s3_env") if request.param == "s3" else None
    return open_storage(settings_for(request.param, tmp_path, s3), "outputs")


def read(storage: OutputStorage, group: str, name: str) -> bytes | None:
    opened = storage.open(group, name)
    if opened is None:
        return None
    with opened:
        data = b"".join(opened.chunks(1000))
        assert len(data) == opened.size
        return data


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_a_saved_file_opens_with_its_size_and_type(storage: OutputStorage) -> None:
    assert storage.save(JOB, "9-0.png", chunked(PNG, 100)) == len(PNG)
    assert storage.save(JOB, "7-0.mp4", [b"video", b"", b"bytes"]) == 10
    with storage.open(JOB, "9-0.png") as opened:  # type: ignore[union-attr]
        assert (opened.size, opened.content_type) == (len(PNG), "image/png")
        assert opened.read(8) == PNG[:8]
        assert opened.read() == PNG[8:]
    assert read(storage, JOB, "7-0.mp4") == b"videobytes"
    assert storage.stat(JOB, "7-0.mp4") is not None
    assert storage.stat(JOB, "7-0.mp4").content_type == "video/mp4"  # type: ignore[union-attr]
    assert storage.stat(JOB, "9-0.png").size == len(PNG)  # type: ignore[union-attr]
    assert storage.open(JOB, "8-0.png") is None
    assert storage.stat(JOB, "8-0.png") is None
    assert storage.open(OTHER, "9-0.png") is None


def test_a_file_past_one_upload_part_streams_through_whole(storage: OutputStorage) -> None:
    video = os.urandom(PART_BYTES + 123_457)  # a multipart upload on S3
    assert storage.save(JOB, "1-0.webm", chunked(video, 64 * 1024)) == len(video)
    assert read(storage, JOB, "1-0.webm") == video
    assert storage.stat(JOB, "1-0.webm").size == len(video)  # type: ignore[union-attr]


def test_a_reader_never_sees_a_partial_file(storage: OutputStorage) -> None:
    seen: list[bytes | None] = []

    def writing(data: bytes) -> Iterator[bytes]:
        yield data[:10]
        seen.append(read(storage, JOB, "9-0.png"))  # mid-write
        yield data[10:]

    storage.save(JOB, "9-0.png", writing(PNG))
    second = PNG[::-1]
    storage.save(JOB, "9-0.png", writing(second))  # a new version over the old one
    assert seen == [None, PNG]
    assert read(storage, JOB, "9-0.png") == second


def test_a_save_that_fails_midway_leaves_nothing(storage: OutputStorage) -> None:
    class SourceBroke(Exception):
        pass

    def broken() -> Iterator[bytes]:
        yield PNG[:100]
        raise SourceBroke

    with pytest.raises(SourceBroke):  # the source's own error, not the storage's
        storage.save(JOB, "9-0.png", broken())
    assert storage.open(JOB, "9-0.png") is None
    assert storage.stat(JOB, "9-0.png") is None
    assert storage.save(JOB, "9-0.png", [PNG]) == len(PNG)
    assert read(storage, JOB, "9-0.png") == PNG


def test_a_copy_outlives_its_source(storage: OutputStorage) -> None:
    storage.save(JOB, "9-0.png", [PNG])
    storage.save(KEY, "9-0.png", [b"an older entry"])
    storage.copy(JOB, "9-0.png", KEY)  # replaces what was there
    with pytest.raises(FileNotFoundError):  # no such source
        storage.copy(JOB, "3-0.png", KEY)
    assert storage.stat(KEY, "3-0.png") is None
    storage.delete_group(JOB)
    assert read(storage, KEY, "9-0.png") == PNG
    assert storage.stat(KEY, "9-0.png").content_type == "image/png"  # type: ignore[union-attr]


def test_a_file_on_this_host_is_stored_and_outlives_its_source(
    storage: OutputStorage, tmp_path: Path
) -> None:
    """``save_file``: a backend's output taken from its folder on this host (BACKEND_DIRS);
    the backend's copy is removed once collected, the stored one stays, whole."""
    comfy = tmp_path / "comfy-output"
    comfy.mkdir()
    source = comfy / "out_00001_.png"
    source.write_bytes(PNG)
    assert storage.save_file(JOB, "9-0.png", str(source)) == len(PNG)
    again = comfy / "out_00002_.png"  # collected again (a resubmission): the name is replaced
    again.write_bytes(b"the second run's file")
    assert storage.save_file(JOB, "9-0.png", str(again)) == len(b"the second run's file")
    assert again.read_bytes() == b"the second run's file"  # the source is left as it was
    source.unlink()
    again.unlink()
    assert read(storage, JOB, "9-0.png") == b"the second run's file"
    with pytest.raises(FileNotFoundError):
        storage.save_file(JOB, "3-0.png", str(source))
    assert storage.stat(JOB, "3-0.png") is None
    (comfy / "folder.png").mkdir()
    with pytest.raises(FileNotFoundError):  # a regular file only
        storage.save_file(JOB, "3-0.png", str(comfy / "folder.png"))


def test_a_prepared_group_holds_nothing_until_saved_into(storage: OutputStorage) -> None:
    storage.prepare(JOB)
    storage.prepare(JOB)  # again: no harm
    assert storage.stat(JOB, "9-0.png") is None
    assert storage.save(JOB, "9-0.png", [PNG]) == len(PNG)
    assert read(storage, JOB, "9-0.png") == PNG
    storage.delete_group(JOB)
    assert storage.stat(JOB, "9-0.png") is None
    with pytest.raises(ValueError, match="invalid output name or group"):
        storage.prepare("../etc")


def test_delete_group_deletes_that_group_only(storage: OutputStorage) -> None:
    for name in ("9-0.png", "9-1.png", "7-0.mp4"):
        storage.save(JOB, name, [PNG])
    storage.save(KEY, "9-0.png", [PNG])  # its group's name starts with JOB's
    storage.save(OTHER, "9-0.png", [PNG])
    storage.delete_group(JOB)
    assert [storage.stat(JOB, n) for n in ("9-0.png", "9-1.png", "7-0.mp4")] == [None] * 3
    assert read(storage, KEY, "9-0.png") == PNG
    assert read(storage, OTHER, "9-0.png") == PNG
    storage.delete_group(JOB)  # nothing left: nothing happens
    assert storage.save(JOB, "9-0.png", [b"again"]) == 5


BAD_NAMES = ["../../etc/passwd", "..", "9-0.png\n", "", "/etc/passwd", "a/9-0.png", ".9-0.png"]
BAD_GROUPS = ["..", JOB.upper(), JOB + "\n", JOB[:31], "../" + JOB, ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused(storage: OutputStorage, name: str) -> None:
    storage.save(JOB, "9-0.png", [PNG])
    assert storage.open(JOB, name) is None
    assert storage.stat(JOB, name) is None
    assert storage.presigned_url(JOB, name, 60) is None
    with pytest.raises(ValueError, match="invalid output name"):
        storage.save(JOB, name, [b"x"])
    with pytest.raises(ValueError, match="invalid output name"):
        storage.copy(JOB, name, OTHER)


@pytest.mark.parametrize("group", BAD_GROUPS)
def test_invalid_groups_are_refused(storage: OutputStorage, group: str) -> None:
    storage.save(JOB, "9-0.png", [PNG])
    assert storage.open(group, "9-0.png") is None
    assert storage.stat(group, "9-0.png") is None
    assert storage.presigned_url(group, "9-0.png", 60) is None
    for write in (
        lambda: storage.save(group, "9-0.png", [b"x"]),
        lambda: storage.copy(JOB, "9-0.png", group),
        lambda: storage.copy(group, "9-0.png", OTHER),
        lambda: storage.delete_group(group),
    ):
        with pytest.raises(ValueError, match="invalid output name"):
            write()
    assert read(storage, JOB, "9-0.png") == PNG  # nothing was touched


def test_presigned_urls(storage: OutputStorage, request: pytest.FixtureRequest) -> None:
    storage.save(JOB, "9-0.png", [PNG])
    url = storage.presigned_url(JOB, "9-0.png", 60)
    if request.node.callspec.params["storage"] == "local":
        assert url is None  # the gateway serves local files itself
        return
    assert url is not None
    got = requests.get(url, timeout=10)  # anyone with the url, no credentials
    assert got.status_code == 200
    assert got.content == PNG
    assert got.headers["Content-Type"] == "image/png"
    query = dict(parse_qsl(urlsplit(url).query))
    signature = query["X-Amz-Signature"]
    query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    tampered = urlsplit(url)._replace(query=urlencode(query)).geturl()
    assert requests.get(tampered, timeout=10).status_code == 403
    other = url.replace("9-0.png", "9-1.png")  # the signature of another object's url
    storage.save(JOB, "9-1.png", [b"another"])
    assert requests.get(other, timeout=10).status_code == 403


def test_a_presigned_url_expires(s3_env: S3Server, tmp_path: Path) -> None:
    storage = open_storage(settings_for("s3", tmp_path, s3_env), "outputs")
    storage.save(JOB, "9-0.png", [PNG])
    url = storage.presigned_url(JOB, "9-0.png", 2)
    assert url is not None
    assert requests.get(url, timeout=10).content == PNG
    assert wait_for(lambda: requests.get(url, timeout=10).status_code == 403, 10)
    assert "expired" in requests.get(url, timeout=10).text


def test_an_unreachable_s3_is_a_storage_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = S3Server(tmp_path / "own-s3").start()  # the session's S3 keeps running
    for key, value in own.aws_env().items():
        monkeypatch.setenv(key, value)
    storage = open_storage(settings_for("s3", tmp_path, own), "outputs")
    storage.save(JOB, "9-0.png", [PNG])
    own.stop()
    try:
        for call in (
            lambda: storage.save(JOB, "9-1.png", [PNG]),
            lambda: storage.open(JOB, "9-0.png"),
            lambda: storage.stat(JOB, "9-0.png"),
            lambda: storage.copy(JOB, "9-0.png", KEY),
            lambda: storage.delete_group(JOB),
        ):
            with pytest.raises(StorageFailed) as failed:
                call()
            message = failed.value.message
            assert str(own.port) not in message
            assert "127.0.0.1" not in message
            assert own.ACCESS_KEY not in message
            assert failed.value.status == 503
        own.start()  # back: the same storage object works again
        assert read(storage, JOB, "9-0.png") == PNG
    finally:
        own.stop()


def test_s3_refusals_are_storage_failures(s3_env: S3Server, tmp_path: Path) -> None:
    no_bucket = Settings(
        data_dir=tmp_path, storage="s3", s3_bucket="no-such-bucket", s3_endpoint_url=s3_env.url
    )
    with pytest.raises(StorageFailed, match="NoSuchBucket"):
        open_storage(no_bucket, "outputs").save(JOB, "9-0.png", [PNG])


def test_wrong_s3_credentials_are_a_storage_failure(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    storage = open_storage(settings_for("s3", tmp_path, s3_env), "outputs")
    with pytest.raises(StorageFailed) as failed:
        storage.save(JOB, "9-0.png", [PNG])
    assert "not-the-secret" not in failed.value.message
    assert "SignatureDoesNotMatch" in failed.value.message


def test_a_disk_that_refuses_writes_is_a_storage_failure(tmp_path: Path) -> None:
    storage = open_storage(settings_for("local", tmp_path, None), "outputs")
    # A file size limit makes the disk refuse the write (EFBIG), as a full one would.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(PNG) // 2, hard))
    try:
        with pytest.raises(StorageFailed, match="cannot be written") as failed:
            storage.save(JOB, "9-0.png", chunked(PNG, 100))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert str(tmp_path) not in failed.value.message
    assert storage.stat(JOB, "9-0.png") is None
    assert list((tmp_path / "data" / "outputs" / JOB).iterdir()) == []  # no part left
