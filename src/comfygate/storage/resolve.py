"""The storage an area of the gateway uses, chosen by name from the settings (``STORAGE``):
``local`` keeps ``DATA_DIR/<area>/``, ``s3`` the objects ``{S3_PREFIX}<area>/`` of
``S3_BUCKET``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from comfygate.config import Settings
from comfygate.storage.base import OutputStorage
from comfygate.storage.local import LocalStorage

# Cached results live in "outputs", under their 64-hex key: a hit is a copy within one area.
Area = Literal["outputs", "inputs"]
AREAS: tuple[Area, ...] = ("outputs", "inputs")


def _local(settings: Settings, area: Area) -> OutputStorage:
    return LocalStorage(settings.data_dir / area)


def _s3(settings: Settings, area: Area) -> OutputStorage:
    from comfygate.storage.s3 import S3Storage, make_client  # boto3 only when it is used

    assert settings.s3_bucket is not None  # Settings refuses STORAGE=s3 without a bucket
    client = make_client(settings.s3_endpoint_url)
    return S3Storage(client, settings.s3_bucket, f"{settings.s3_prefix}{area}/")


STORAGES: dict[str, Callable[[Settings, Area], OutputStorage]] = {"local": _local, "s3": _s3}


def open_storage(settings: Settings, area: Area) -> OutputStorage:
    """The storage of ``area`` ("outputs" or "inputs")."""
    if area not in AREAS:
        raise ValueError(f"unknown storage area {area!r}")
    return STORAGES[settings.storage](settings, area)
