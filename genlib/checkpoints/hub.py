"""Fetching a checkpoint from the Hugging Face Hub: safetensors and configs only (no pickles, no code),
within the size the demo allows, with the offline case in words.
"""
from __future__ import annotations

from pathlib import Path

from genlib.checkpoints.layout import HUB_ALLOW_PATTERNS, CheckpointError


def _download(repo_id: str) -> Path:
    """Fetch a hub repo's safetensors folder (no pickles, no code) into the local HF cache.

    Refused when loading from the hub is off (``genlib.demo.limits().hub``), and before anything is
    downloaded when the files it would fetch add up to more than ``limits().hub_bytes``.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from genlib.demo import limits

    caps = limits()
    if not caps.hub:
        raise CheckpointError(f"loading {repo_id!r} from the Hugging Face Hub is off here (set GENLIB_DEMO_HUB=1 to "
                              "allow it); use a shipped checkpoint or a local folder")
    size = _hub_download_size(repo_id)
    if size is not None and size > caps.hub_bytes:
        raise CheckpointError(f"{repo_id!r} would download {size / 2**20:,.0f} MB of weights and configs, more than "
                              f"the {caps.hub_bytes / 2**20:,.0f} MB allowed here; nothing was downloaded")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(HUB_ALLOW_PATTERNS)))
    except LocalEntryNotFoundError:
        raise CheckpointError(f"could not download {repo_id!r} from the Hugging Face Hub: this machine is offline "
                              "and the model is not in the local cache") from None
    except HfHubHTTPError as err:
        raise CheckpointError(f"the Hugging Face Hub refused {repo_id!r}: {str(err).splitlines()[0]}") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"could not fetch {repo_id!r} from the Hugging Face Hub: {err}") from None


def _hub_download_size(repo_id: str) -> int | None:
    """Bytes of the files ``_download`` would fetch, from the hub's file list; None when the hub cannot be
    asked (offline: the download then comes from the local cache, which was checked when it was filled)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception:  # offline, unknown repo, hub down: snapshot_download says which, in words, just after
        return None
    files = {s.rfilename: s.size or 0 for s in info.siblings or []}
    return sum(files[name] for name in filter_repo_objects(files, allow_patterns=list(HUB_ALLOW_PATTERNS)))
