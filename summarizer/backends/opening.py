"""The KV state of the prompt opening every call shares, kept on disk between processes.

Every prompt of the pipeline starts with the same ~830 tokens (instructions and the few-shot
example) before the article. Within a process llama.cpp keeps them in its KV cache; a new
process would read them again (~20 s on two CPU cores). This module saves that sequence
state with llama.cpp's own `llama_state_seq_save_file` the first time it is computed and
restores it in later processes (0.02 s measured). Restored or computed, it is the same bits: the
opening is always evaluated on its own, from position 0, in the same batches, so a call's
answer does not depend on whether the state came from disk.

The file name hashes everything the state depends on (model file, llama_cpp version,
context and batch size, the tokens); a file that does not load or holds other tokens is
deleted and rebuilt, and a folder that cannot be written only costs the speed-up.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

_MARK = "\x00<opening ends here>\x00"
_MARGIN = 4  # tokens cut from the end: the tokenizer may merge the opening's last characters with the article


def opening_tokens(render: Any, tokenize: Any, opening: str) -> list[int]:
    """Tokens of a system message that starts with `opening`, as far as every such prompt shares them."""
    text = render([{"role": "system", "content": opening + _MARK}])
    return tokenize(text[:text.index(_MARK)])[:-_MARGIN]


def state_path(folder: Path, identity: dict, tokens: list[int]) -> Path:
    """Where the state for these tokens under this model and configuration is kept."""
    key = hashlib.sha256(json.dumps({**identity, "tokens": tokens}, sort_keys=True).encode()).hexdigest()
    return folder / f"opening-{key[:32]}.kv"


def restore_or_build(llm: Any, tokens: list[int], path: Path | None) -> dict:
    """Put the opening's state into sequence 0 of an empty context: from `path` if it holds it, else
    by evaluating the tokens (then saved to `path`). Returns what happened, for benchmarks."""
    import llama_cpp

    t0 = time.perf_counter()
    n = len(tokens)
    if path is not None and path.is_file():
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        buf = (llama_cpp.llama_token * n)()
        count = ctypes.c_size_t(0)
        got = llama_cpp.llama_state_seq_load_file(llm._ctx.ctx, str(path).encode(), 0, buf, n, ctypes.byref(count))
        if got and count.value == n and list(buf) == tokens:
            llm.input_ids[:n] = tokens
            llm.n_tokens = n
            return {"tokens": n, "source": "disk", "seconds": time.perf_counter() - t0}
        path.unlink(missing_ok=True)
    llm.reset()
    llm.eval(tokens)  # evaluating from position 0 first drops whatever a failed load left in sequence 0
    if path is not None:
        _save(llm, tokens, path)
    return {"tokens": n, "source": "computed", "seconds": time.perf_counter() - t0}


def _save(llm: Any, tokens: list[int], path: Path) -> None:
    import llama_cpp

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(fd)
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        if llama_cpp.llama_state_seq_save_file(llm._ctx.ctx, tmp.encode(), 0, arr, len(tokens)):
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    except OSError:  # read-only or full disk: the next process computes the opening again
        return
