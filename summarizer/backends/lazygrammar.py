"""Greedy decoding under a grammar without checking the whole vocabulary at every token.

llama-cpp-python applies the grammar sampler to all ~150k candidate tokens before the
greedy pick, which dominates decode time for small models on a CPU. For greedy
decoding the result is the same if we first take the best token and ask the grammar
about that one token only, falling back to the full grammar pass when it is rejected
(the approach llama.cpp's own common sampler takes). Outputs are identical; only the
work per token shrinks.
"""
from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np


def install(llm: Any) -> None:
    """Make `llm` (a llama_cpp.Llama) use the lazy grammar check for greedy grammar decoding."""
    import llama_cpp
    from llama_cpp import _internals as internals

    original = llm._init_sampler

    def _init_sampler(*args: Any, **kw: Any):
        grammar = kw.get("grammar")
        greedy_plain = (kw.get("temp", 0.8) == 0.0 and kw.get("repeat_penalty", 1.0) == 1.0
                        and not kw.get("frequency_penalty") and not kw.get("presence_penalty")
                        and kw.get("logits_processor") is None and kw.get("mirostat_mode", 0) == 0)
        if grammar is None or not greedy_plain or args:
            return original(*args, **kw)
        sampler = internals.LlamaSampler()
        lazy = _LazyGrammar(llm._model, grammar, llama_cpp)
        llama_cpp.llama_sampler_chain_add(sampler.sampler, lazy.get_sampler())
        sampler.custom_samplers.append((llama_cpp.llama_sampler_chain_n(sampler.sampler) - 1, lazy))
        sampler.add_greedy()
        return sampler

    llm._init_sampler = _init_sampler


class _LazyGrammar:
    def __init__(self, model: Any, grammar: Any, lib: Any):
        self.lib = lib
        self.g = lib.llama_sampler_init_grammar(model.vocab, grammar._grammar.encode("utf-8"),
                                                grammar._root.encode("utf-8"))
        self.one = (lib.llama_token_data * 1)()
        self.one_arr = lib.llama_token_data_array(data=self.one, size=1, selected=-1, sorted=False)
        self.full_passes = 0
        self.fast_passes = 0

        def apply(_smpl, cur_p):
            arr = cur_p.contents
            n = arr.size
            buf = (lib.llama_token_data * n).from_address(ctypes.addressof(arr.data.contents))
            view = np.ctypeslib.as_array(buf)
            i = int(np.argmax(view["logit"]))
            tok, logit = int(view["id"][i]), float(view["logit"][i])
            self.one[0].id, self.one[0].logit, self.one[0].p = tok, logit, 0.0
            self.one_arr.size, self.one_arr.selected, self.one_arr.sorted = 1, -1, False
            lib.llama_sampler_apply(self.g, ctypes.byref(self.one_arr))
            if math.isfinite(self.one[0].logit):
                self.fast_passes += 1
                arr.data[0].id, arr.data[0].logit, arr.data[0].p = tok, logit, 0.0
                arr.size, arr.selected, arr.sorted = 1, -1, False
                return
            self.full_passes += 1
            lib.llama_sampler_apply(self.g, cur_p)

        def accept(_smpl, token):
            lib.llama_sampler_accept(self.g, token)

        def reset(_smpl):
            lib.llama_sampler_reset(self.g)

        self._refs = (apply, accept, reset)
        iface = lib.llama_sampler_i()
        iface.apply = lib.llama_sampler_i_apply(apply)
        iface.accept = lib.llama_sampler_i_accept(accept)
        iface.reset = lib.llama_sampler_i_reset(reset)
        iface.name = lib.llama_sampler_i_name(0)
        iface.clone = lib.llama_sampler_i_clone(0)
        iface.free = lib.llama_sampler_i_free(0)
        self._iface = iface
        self._cfuncs = (iface.apply, iface.accept, iface.reset)
        self.sampler = lib.llama_sampler()
        self.sampler.iface = ctypes.pointer(iface)
        self.sampler.ctx = None

    def get_sampler(self):
        return ctypes.pointer(self.sampler)

    def __del__(self):
        try:
            self.lib.llama_sampler_free(self.g)
        except Exception:  # noqa: BLE001 - the library may be unloaded already at interpreter exit
            return
