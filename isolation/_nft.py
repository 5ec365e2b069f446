"""libnftables' JSON API through ctypes: the library the `nft` command is built on, without a
subprocess and without Debian's python3-nftables (which installs into the system Python
only). The whole binding is the six C functions below; they have been stable since
libnftables 0.9.3 (`libnftables1`, a dependency of Debian's `nftables`).

Every command list runs as one netlink batch: the kernel applies all of it or none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from typing import Any

from isolation._net_errors import NftablesError

__all__ = ["Nft"]

_NFT_CTX_OUTPUT_JSON = 1 << 4
_SONAME = "libnftables.so.1"


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or _SONAME)
    except OSError as err:
        raise NftablesError("load", _SONAME, f"{err} (apt: libnftables1)") from err
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_int
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


class Nft:
    """One libnftables context, in the caller's network namespace."""

    def __init__(self) -> None:
        self._lib = _load()
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise NftablesError("create", "nftables context", "nft_ctx_new failed")
        self._ctx = ctx
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        self._lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON)

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def run(self, commands: list[dict[str, Any]], action: str, target: str) -> list[dict]:
        """Run the commands as one transaction; returns the JSON objects printed (for list
        commands), or raises NftablesError with libnftables' first error line."""
        if not commands:
            return []
        payload = json.dumps({"nftables": commands}).encode()
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, payload)
        out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
        err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            first = next((line for line in err.splitlines() if line.strip()), f"rc {rc}")
            raise NftablesError(action, target, first.removeprefix("Error: ").strip())
        return json.loads(out).get("nftables", []) if out.strip() else []
