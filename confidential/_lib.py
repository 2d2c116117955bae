"""The library underneath: wallycore and a narrow ctypes binding to its libsecp256k1-zkp.

wallycore's Python API covers blinding, proving and rewinding. It has no call
that verifies a range proof without rewinding it, verifies a surjection proof,
or checks a Pedersen tally. The same shared object exports those
libsecp256k1-zkp functions, so this module binds exactly them with ctypes,
against the very library wallycore loaded and with wallycore's own context.

Nothing here is a fallback: if wallycore is missing, is not an Elements build,
or lacks a symbol bound below, importing this module raises
:class:`~confidential.errors.LibraryUnavailable`.

ctypes releases the GIL around every call on a ``CDLL``, which is what lets
:func:`confidential.verify_outputs_parallel` use several cores.

Opaque struct sizes (bytes reserved per object; the library writes at most this):

    object                          size in libsecp256k1-zkp   reserved here
    secp256k1_generator             64                         64
    secp256k1_pedersen_commitment   33 (old) or 64 (new)       64
    secp256k1_surjectionproof       8,264 (+8 in VERIFY builds) 8,704

Generators are passed to ``secp256k1_surjectionproof_verify`` as a contiguous
array, so their stride must be the library's: 64 in every version.
"""

from __future__ import annotations

import ctypes
from typing import Any

from .errors import LibraryUnavailable

try:
    import wallycore as wally
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise LibraryUnavailable(f"confidential needs wallycore (libsecp256k1-zkp): {exc}") from exc

if not wally.is_elements_build():  # pragma: no cover
    raise LibraryUnavailable("wallycore was built without Elements support; confidential transactions need it")

_ext = getattr(wally, "_wallycore", None)
_so_path = getattr(_ext, "__file__", None)
if not isinstance(_so_path, str):  # pragma: no cover
    raise LibraryUnavailable("cannot locate wallycore's shared library (wallycore._wallycore.__file__)")

try:
    _so = ctypes.CDLL(_so_path)
except OSError as exc:  # pragma: no cover
    raise LibraryUnavailable(f"cannot load {_so_path}: {exc}") from exc

GENERATOR_SIZE = 64
COMMITMENT_SIZE = 64
SURJECTIONPROOF_SIZE = 8704

_vp = ctypes.c_void_p
_cp = ctypes.c_char_p
_sz = ctypes.c_size_t
_u64p = ctypes.POINTER(ctypes.c_uint64)
_intp = ctypes.POINTER(ctypes.c_int)


def _bind(name: str, argtypes: list[Any], restype: Any) -> Any:
    try:
        fn = getattr(_so, name)
    except AttributeError as exc:
        raise LibraryUnavailable(f"{_so_path} does not export {name}") from exc
    fn.argtypes = argtypes
    fn.restype = restype
    return fn


_get_context = _bind("wally_get_secp_context", [], _vp)

# int secp256k1_pedersen_commitment_parse(ctx, commitment *out, const unsigned char *in33)
commitment_parse = _bind("secp256k1_pedersen_commitment_parse", [_vp, _vp, _cp], ctypes.c_int)
# int secp256k1_generator_parse(ctx, generator *out, const unsigned char *in33)
generator_parse = _bind("secp256k1_generator_parse", [_vp, _vp, _cp], ctypes.c_int)
# int secp256k1_generator_generate(ctx, generator *out, const unsigned char *seed32)
generator_generate = _bind("secp256k1_generator_generate", [_vp, _vp, _cp], ctypes.c_int)
# int secp256k1_pedersen_commit(ctx, commitment *out, const unsigned char *blind32, uint64 value, const generator *gen)
pedersen_commit = _bind("secp256k1_pedersen_commit", [_vp, _vp, _cp, ctypes.c_uint64, _vp], ctypes.c_int)
# int secp256k1_pedersen_verify_tally(ctx, const commitment * const *pos, size_t npos,
#                                      const commitment * const *neg, size_t nneg)
pedersen_verify_tally = _bind("secp256k1_pedersen_verify_tally", [_vp, _vp, _sz, _vp, _sz], ctypes.c_int)
# int secp256k1_rangeproof_verify(ctx, uint64 *min, uint64 *max, const commitment *commit,
#                                 const unsigned char *proof, size_t plen,
#                                 const unsigned char *extra_commit, size_t extra_len, const generator *gen)
rangeproof_verify = _bind(
    "secp256k1_rangeproof_verify", [_vp, _u64p, _u64p, _vp, _cp, _sz, _cp, _sz, _vp], ctypes.c_int
)
# int secp256k1_rangeproof_info(ctx, int *exp, int *mantissa, uint64 *min, uint64 *max,
#                               const unsigned char *proof, size_t plen)
rangeproof_info = _bind("secp256k1_rangeproof_info", [_vp, _intp, _intp, _u64p, _u64p, _cp, _sz], ctypes.c_int)
# int secp256k1_surjectionproof_parse(ctx, surjectionproof *out, const unsigned char *in, size_t inlen)
surjectionproof_parse = _bind("secp256k1_surjectionproof_parse", [_vp, _vp, _cp, _sz], ctypes.c_int)
# int secp256k1_surjectionproof_verify(ctx, const surjectionproof *proof, const generator *inputs,
#                                      size_t n_inputs, const generator *output)
surjectionproof_verify = _bind("secp256k1_surjectionproof_verify", [_vp, _vp, _vp, _sz, _vp], ctypes.c_int)

CTX: int = _get_context() or 0
if not CTX:  # pragma: no cover
    raise LibraryUnavailable("wally_get_secp_context() returned NULL")

# wallycore calls this package relies on: checked here so a wallycore without
# them fails at import, not in the middle of blinding a transaction.
_WALLY_CALLS = (
    "asset_generator_from_bytes",
    "asset_value_commitment",
    "asset_rangeproof_with_nonce",
    "asset_surjectionproof",
    "asset_unblind_with_nonce",
    "asset_final_vbf",
    "ecdh_nonce_hash",
    "ec_public_key_from_private_key",
    "ec_private_key_verify",
    "ec_public_key_verify",
)
for _name in _WALLY_CALLS:
    if not callable(getattr(wally, _name, None)):  # pragma: no cover
        raise LibraryUnavailable(f"wallycore lacks {_name}")

SO_PATH: str = _so_path

__all__ = [
    "COMMITMENT_SIZE",
    "CTX",
    "GENERATOR_SIZE",
    "SO_PATH",
    "SURJECTIONPROOF_SIZE",
    "commitment_parse",
    "generator_generate",
    "generator_parse",
    "pedersen_commit",
    "pedersen_verify_tally",
    "rangeproof_info",
    "rangeproof_verify",
    "surjectionproof_parse",
    "surjectionproof_verify",
    "wally",
]
