"""Where a job's files go on ComfyUI, and their removal from a ComfyUI on this host.

ComfyUI's ``SaveImage`` (``folder_paths.get_save_image_path``) lists the folder of its
``filename_prefix`` to number each new file, so one flat output folder that every job writes
into makes every job slower than the one before (4,900 files there tripled a model-free round
trip). Each job writes into its own subfolder instead, ``output/comfygate/<job id>/``: the scan
sees only that job's files, and the job's files can be removed as one folder.

For the managed local ComfyUI the gateway knows the folders (``--base-directory``), and for a
backend on this host the operator names them (``BACKEND_DIRS``): the gateway takes a job's
outputs from the disk instead of ``/view`` and removes a job's files once it has collected them
(:class:`LocalFolders`); for a remote backend the operator sweeps the same paths
(docs/OPERATIONS.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from comfygate.comfy.client import OutputRef

__all__ = ["JOB_OUTPUT_FOLDER", "LocalFolders", "job_folder", "job_output_prefix"]

log = logging.getLogger(__name__)

JOB_OUTPUT_FOLDER = "comfygate"
"""The subfolder of ComfyUI's output folder that holds one folder per job."""
JOB_OUTPUT_NAME = "out"
"""The file-name part of a job's prefix: files are ``out_00001_.png``, ``out_00002_.png``..."""

_JOB_ID = re.compile(r"[0-9a-f]{32}")
# The names the gateway gives uploaded input images (inputs.images.CheckedImage.filename).
_INPUT_NAME = re.compile(r"cg-[0-9a-f]{32}\.(?:png|jpg|webp)")


def job_folder(job_id: str) -> str:
    """The name of a job's folder on ComfyUI: a one-way digest of the job id, never the id.
    ComfyUI writes the whole prompt, this prefix included, into every PNG it saves, and a cache
    hit serves those very bytes to whoever asks next (another key too), so the bytes must name
    no job."""
    return hashlib.sha256(job_id.encode()).hexdigest()[:32]


def job_output_prefix(job_id: str) -> str:
    """The ``filename_prefix`` of every output node of a job: ``comfygate/<job folder>/out``.

    ComfyUI 0.3.75 accepts a relative path here; /history then reports ``subfolder``
    ``comfygate/<job folder>`` and /view serves the file with that subfolder."""
    return f"{JOB_OUTPUT_FOLDER}/{job_folder(job_id)}/{JOB_OUTPUT_NAME}"


class LocalFolders:
    """The input and output folders of a ComfyUI whose ``--base-directory`` is on this host."""

    def __init__(self, base_dir: Path) -> None:
        self.output = base_dir / "output"
        self.input = base_dir / "input"
        self._roots = {
            kind: os.path.realpath(base_dir / kind) for kind in ("output", "temp", "input")
        }

    def file(self, ref: OutputRef) -> str | None:
        """Where ComfyUI wrote an output it reported, or None when the reference leads out of
        its folder (``..``, an absolute path, a symlink) or names another kind of folder.

        ComfyUI's ``/view`` refuses the same paths (``os.path.commonpath`` of the folder and
        the file); a reference comes from ComfyUI's messages, so from any custom node too."""
        root = self._roots.get(ref.type)
        if root is None or not ref.filename or "\x00" in ref.filename + ref.subfolder:
            return None
        path = os.path.realpath(os.path.join(root, ref.subfolder, ref.filename))
        return path if path.startswith(root + os.sep) else None

    def job_outputs(self, job_id: str) -> Path:
        """The folder a job's outputs are written to (it may not exist)."""
        return self.output / JOB_OUTPUT_FOLDER / job_folder(job_id)

    def remove_job_outputs(self, job_id: str) -> None:
        """Delete the job's output folder, if there is one (only for a job id: 32 hex)."""
        if not _JOB_ID.fullmatch(job_id):
            return
        try:
            shutil.rmtree(self.job_outputs(job_id))
        except FileNotFoundError:
            pass
        except OSError as exc:  # never fails the job: it only leaves the files behind
            log.warning("could not remove a job's outputs on ComfyUI: %s", type(exc).__name__)

    def remove_inputs(self, names: Iterable[str]) -> None:
        """Delete uploaded input images by name; only gateway-made names are touched."""
        for name in names:
            if not _INPUT_NAME.fullmatch(name):
                continue
            try:
                (self.input / name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove an input image on ComfyUI: %s", type(exc).__name__)
