"""Fetching checkpoints from the Hugging Face hub: ``owner/name[@revision]`` -> a local file.

When the hub cannot be reached (no network, or ``HF_HUB_OFFLINE`` set) the download is tried once
from the local cache only, so an offline user gets one clear line in seconds instead of the hub
client's retries (about 25 s of back-off before the same failure).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from birefnet_edge.errors import WeightsError

log = logging.getLogger(__name__)

HUB_FILE = "model.safetensors"
DEFAULT_FIX = "Download it on a connected machine and pass the local file instead: --weights path/to/model.safetensors"
PROBE_TIMEOUT_S = 3.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# A file inside the Hugging Face cache names its repository: .../models--owner--name/snapshots/<commit>/...
_HF_CACHE_DIR = re.compile(r"^models--(?P<owner>[^/]+?)--(?P<name>[^/]+)$")
_TRUE = ("1", "on", "yes", "true")
# A direct TCP probe says nothing when traffic must go through a proxy: then the client decides.
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
# Hub repositories whose architecture is not the default (swin_v1_l, 1024 px) BiRefNet.
HUB_VARIANTS = {
    "BiRefNet_lite": "BiRefNet_lite",
    "BiRefNet_lite-2K": "BiRefNet_lite-2K",
    "BiRefNet_HR": "BiRefNet_HR",
    "BiRefNet_HR-matting": "BiRefNet_HR",
}


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """Split ``owner/name[@revision]``; None when ``spec`` is not a hub id."""
    if not _HUB_ID.match(spec):
        return None
    repo, _, revision = spec.partition("@")
    return repo, revision or None


def hub_repo_of_path(path: Path) -> str | None:
    """The ``owner/name`` of a file inside a Hugging Face cache folder, if it is one."""
    for parent in path.resolve().parents:
        match = _HF_CACHE_DIR.match(parent.name)
        if match:
            return f"{match['owner']}/{match['name']}"
    return None


def hub_variant(repo: str) -> str | None:
    """The registered variant of a known hub repository (official ones default to ``BiRefNet``)."""
    return HUB_VARIANTS.get(repo.split("/")[1], "BiRefNet" if repo.startswith("ZhengPeng7/") else None)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, not when huggingface_hub was imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_reachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub endpoint within ``timeout`` (always True behind a proxy)."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_reason(endpoint: str, offline_at_import: bool) -> str | None:
    """Why only the local cache can be used (None when the hub is reachable)."""
    if hub_offline() or offline_at_import:
        return "HF_HUB_OFFLINE is set"
    return None if hub_reachable(endpoint) else f"the hub ({endpoint}) cannot be reached"


def download_from_hub(
    repo: str, revision: str | None, filename: str = HUB_FILE, fix: str | None = None
) -> tuple[Path, str]:
    """Fetch ``filename`` of a hub repo; return the local path and the commit actually served.

    Without ``revision`` the hub serves whatever ``main`` points to today: the commit is resolved and
    recorded, with a warning that the reference floats. Offline, only the local cache is consulted.

    Args:
        repo: ``owner/name``.
        revision: Commit, tag or branch (None: ``main``).
        filename: The file in the repository.
        fix: What the user can do instead, ending the error message (default: pass a local ``--weights`` file).

    Raises:
        MissingDependencyError: huggingface_hub is not installed (extra ``hub``).
        WeightsError: The hub is unreachable and the file is not cached, or the repo/revision/file
            does not exist.
    """
    from birefnet_edge._deps import require

    hub = require("huggingface_hub", "hub", "downloading weights from the hub")
    constants = require("huggingface_hub.constants", "hub")
    endpoint = constants.ENDPOINT
    offline_why = _offline_reason(endpoint, bool(constants.HF_HUB_OFFLINE))
    try:
        path = Path(
            hub.hf_hub_download(repo_id=repo, filename=filename, revision=revision, local_files_only=bool(offline_why))
        )
    except Exception as exc:  # offline, 404, auth: huggingface_hub raises many types
        why = f"{offline_why} and the file is not in the local cache" if offline_why else f"{type(exc).__name__}: {exc}"
        why = why.splitlines()[0] if why else type(exc).__name__  # the client's messages run over several lines
        at = f"'{repo}' at revision {revision or 'main'}"
        raise WeightsError(f"cannot fetch {filename} of {at}: {why}. {fix or DEFAULT_FIX}") from exc
    served = path.parent.name if re.fullmatch(r"[0-9a-f]{40}", path.parent.name) else None
    if revision is None:
        log.warning(
            "no revision pinned for %s: using commit %s; pin it (%s@%s) so the reference cannot move",
            repo,
            served or "unknown",
            repo,
            served or "<commit>",
        )
    return path, served or revision or "unknown"
