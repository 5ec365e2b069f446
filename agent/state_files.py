"""Files the agent keeps in its state dir, replaced atomically: a temporary file renamed
over the old one, so a reader sees the previous or the new content, never half of one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_file(state_dir: Path, name: str, text: str) -> Path:
    """Write `text` as `state_dir/name` (creating the dir); OSError when it cannot, with
    no temporary file left behind."""
    path = state_dir / name
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    try:
        state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path
