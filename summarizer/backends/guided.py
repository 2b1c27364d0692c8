"""Schema-guided greedy decoding: the model only decides where the JSON schema leaves a choice.

A grammar-constrained sampler (llama.cpp's GBNF) still runs one forward pass per output
token, although most tokens of a small JSON answer are fixed by the schema: braces, key
names, quotes, separators, the rest of an enum value once its first token is chosen.
This decoder walks the schema instead. Text the schema fixes is queued and evaluated in
one batch together with the next decision (a batch of n tokens costs far less than n
single steps on a CPU); at a decision it takes the most likely token among the ones the
schema allows (greedy, like temperature 0 under the grammar):

- an enum / const / null-or-value / "more items or close" choice: tokens that are a
  prefix of one of the literal alternatives; once one alternative is left, the rest of
  it is fixed text;
- a free string: tokens without a quote, backslash or control character that keep it
  within maxLength, or a closing quote (possibly merged with the fixed text after it).

Fixed text is tokenized as a whole, and the last token of fixed text before a decision
is left open so the model may pick a merged token (`["` or ` [[`), which keeps the
token sequence close to what the model itself would write. Text that follows the last
decision is never evaluated at all. The answer is returned as canonical JSON.

Supported: objects (properties in order, all emitted), anyOf of objects discriminated by
a const/enum first property, arrays (prefixItems tuples and item lists with
min/maxItems), strings (min/maxLength), enum/const, null, booleans, and anyOf of those
with null. `compile_schema` raises `Unsupported` for anything else; the caller then
falls back to the llama.cpp grammar.
"""
from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


class Unsupported(ValueError):
    """The schema uses a construct this decoder does not handle."""


class ContextFull(ValueError):
    """Prompt plus answer would exceed the model's context window."""


class Budget(RuntimeError):
    """The answer needed more decisions than max_tokens allows."""


def _lit(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


# -- vocabulary tables (built once per model) ------------------------------------------
@dataclass
class Vocab:
    pieces: list[bytes]
    by_piece: dict[bytes, int]
    sorted_pieces: list[bytes]
    sorted_ids: list[int]
    plain: np.ndarray      # token text may stand inside a JSON string unescaped
    nchars: np.ndarray     # characters the token adds (UTF-8 lead bytes)
    digits: np.ndarray     # token is all digits
    dotted: np.ndarray     # digits with one '.' (or the '.' alone)

    @classmethod
    def of(cls, llm: Any) -> "Vocab":
        cached = getattr(llm, "_summarizer_vocab", None)
        if cached is not None:
            return cached
        import ctypes

        import llama_cpp

        buf = ctypes.create_string_buffer(64)
        pieces = []
        for i in range(llm.n_vocab()):
            k = llama_cpp.llama_token_to_piece(llm._model.vocab, i, buf, 64, 0, False)
            pieces.append(buf.raw[:k] if k > 0 else b"")
        llm._summarizer_vocab = cls.from_pieces(pieces)
        return llm._summarizer_vocab

    @classmethod
    def from_pieces(cls, pieces: list[bytes]) -> "Vocab":
        """Tables for a vocabulary given as each token's bytes (b"" for control tokens)."""
        n = len(pieces)
        by_piece: dict[bytes, int] = {}
        for i, p in enumerate(pieces):
            if p and p not in by_piece:
                by_piece[p] = i
        order = sorted(by_piece)
        plain = np.zeros(n, dtype=bool)
        nchars = np.zeros(n, dtype=np.int32)
        for i, p in enumerate(pieces):
            if p and by_piece.get(p) == i and not any(b < 0x20 or b in (0x22, 0x5C, 0x7F) for b in p):
                plain[i] = True
            nchars[i] = _chars(p)
        digits = np.array([bool(p) and p.isdigit() for p in pieces])
        dotted = np.array([p.count(b".") == 1 and (p == b"." or p.replace(b".", b"").isdigit()) for p in pieces])
        return cls(pieces, by_piece, order, [by_piece[p] for p in order], plain, nchars, digits, dotted)

    def prefixes_of(self, text: bytes) -> list[int]:
        """Tokens whose text is a non-empty prefix of `text`."""
        return [t for k in range(1, len(text) + 1) if (t := self.by_piece.get(text[:k])) is not None]

    def starting_with(self, head: bytes) -> list[int]:
        """Tokens whose text starts with `head`."""
        i = bisect.bisect_left(self.sorted_pieces, head)
        out = []
        while i < len(self.sorted_pieces) and self.sorted_pieces[i].startswith(head):
            out.append(self.sorted_ids[i])
            i += 1
        return out


# -- the decoding session -----------------------------------------------------------------
class Session:
    """One answer: KV prefix reuse, fixed text queued, greedy decisions among allowed tokens."""

    def __init__(self, llm: Any, prompt: list[int], max_tokens: int | None):
        self.llm, self.vocab = llm, Vocab.of(llm)
        self.max_decisions = max_tokens or 1 << 30
        self.decisions = 0
        cached = llm._input_ids.tolist() if llm.n_tokens else []
        keep = 0
        for a, b in zip(cached, prompt):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(prompt) - 1)  # always evaluate at least one token to get fresh logits
        if len(prompt) + 1 > llm.n_ctx():
            raise ContextFull(f"prompt of {len(prompt)} tokens does not fit the context window of {llm.n_ctx()}")
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        llm.n_tokens = keep
        self.queue: list[int] = list(prompt[keep:])
        self.held = b""       # fixed text not yet tokenized
        self.ahead = b""      # text a chosen token wrote beyond the value it closed (start of what follows)

    # fixed text
    def force(self, text: bytes) -> None:
        """Text the schema fixes; the part a chosen token already wrote (`ahead`) is skipped."""
        if self.ahead:
            k = min(len(self.ahead), len(text))
            assert self.ahead[:k] == text[:k], (self.ahead, text)
            self.ahead, text = self.ahead[k:], text[k:]
        self.held += text

    def _split_held(self) -> bytes:
        """Queue all fixed text but its last token, whose text is returned (it may merge with a decision)."""
        if not self.held:
            return b""
        toks = self.llm.tokenize(self.held, add_bos=False, special=False)
        if len(toks) > 1:
            self.queue += toks[:-1]
        last = self.vocab.pieces[toks[-1]]
        if b"".join(self.vocab.pieces[t] for t in toks) != self.held:  # unusual bytes: keep it all open
            self.queue = self.queue[: len(self.queue) - (len(toks) - 1)]
            last = self.held
        self.held = b""
        return last

    def _logits(self) -> np.ndarray:
        llm = self.llm
        if self.queue:
            if llm.n_tokens + len(self.queue) > llm.n_ctx():
                raise ContextFull(f"answer does not fit the context window of {llm.n_ctx()} tokens")
            llm.eval(self.queue)
            self.queue = []
        ptr = llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))

    def _pick(self, allowed: list[int] | np.ndarray) -> int:
        if not isinstance(allowed, np.ndarray) and len(allowed) == 1:  # no choice: no model pass needed
            self.queue.append(allowed[0])
            return allowed[0]
        self.decisions += 1
        if self.decisions > self.max_decisions:
            raise Budget(f"answer needs more than {self.max_decisions} tokens")
        logits = self._logits()
        if isinstance(allowed, np.ndarray):  # boolean mask
            masked = np.where(allowed, logits, -np.inf)
            tok = int(np.argmax(masked))
        else:
            ids = np.asarray(allowed, dtype=np.int64)
            tok = int(ids[int(np.argmax(logits[ids]))])
        self.queue.append(tok)
        return tok

    # decisions
    def choose(self, options: list[bytes]) -> int:
        """Pick one of several literal continuations; its unchosen rest becomes fixed text."""
        if len(options) == 1:
            self.force(options[0])
            return 0
        for a in options:
            if any(a != b and b.startswith(a) for b in options):
                raise Unsupported(f"ambiguous alternatives {options!r}")
        if self.ahead:  # a token closing the previous string already wrote the start of this choice
            whole = [i for i, o in enumerate(options) if self.ahead.startswith(o)]
            if whole:
                self.ahead = self.ahead[len(options[whole[0]]):]
                return whole[0]
            opts, done, head, self.ahead = options, self.ahead, b"", b""
        else:
            common = _common_prefix(options)
            self.force(common)
            head = self._split_held()
            opts, done = [head + o[len(common):] for o in options], b""
            # keep the last fixed token open only if a longer token could merge it with an option
            if head in self.vocab.by_piece and not any(
                    len(self.vocab.pieces[t]) > len(head) for o in opts for t in self.vocab.prefixes_of(o)):
                self._pick([self.vocab.by_piece[head]])
                done = head
        while True:
            live = [i for i, o in enumerate(opts) if o.startswith(done)]
            if len(live) == 1:
                self.force(opts[live[0]][len(done):])
                return live[0]
            cands = sorted({t for i in live for t in self.vocab.prefixes_of(opts[i][len(done):])
                            if len(done) + len(self.vocab.pieces[t]) >= len(head)})  # no split of the open token
            if not cands:  # no token spells the rest (odd bytes): take the first option as fixed text
                self.force(opts[live[0]][len(done):])
                return live[0]
            done += self.vocab.pieces[self._pick(cands)]

    def string(self, min_len: int, max_len: int, follow: bytes, then: list[bytes]) -> str:
        """A free string after its opening quote (already fixed text), then the fixed text `follow`.

        `then` are the literal options of the decision after `follow`: the closing quote may come
        as one token with the text after it (`",` or `"]]`), as the model would write it.
        """
        v = self.vocab
        head = self._split_held()  # ends with the opening quote
        ends = [b'"' + follow + t for t in then]
        closers = sorted({t for e in ends for t in v.prefixes_of(e) if v.pieces[t].startswith(b'"')})
        content = b""
        n = 0
        if head:  # the first token may be the open fixed text itself or merge with the string's start
            cands = [t for t in v.starting_with(head) if _fits(v.pieces[t][len(head):], min_len, max_len, ends)]
            if cands:
                piece = v.pieces[self._pick(cands)][len(head):]
            else:  # the open fixed text is not one token (odd bytes): evaluate it as it tokenizes
                toks = self.llm.tokenize(head, add_bos=False, special=False)
                self.queue += toks
                piece = b""
            if piece.startswith(b'"'):
                self._close(piece, follow)
                return ""
            content, n = piece, _chars(piece)
        while True:
            mask = v.plain & (v.nchars <= max_len - n)
            if n >= min_len:
                mask = mask.copy()
                mask[closers] = True
            piece = v.pieces[self._pick(mask)]
            if piece.startswith(b'"'):
                self._close(piece, follow)
                return content.decode("utf-8", errors="replace")
            content += piece
            n += _chars(piece)

    def number(self, integer: bool, follow: bytes, then: list[bytes]) -> int | float:
        """A JSON number (at most 15 digits), then the fixed text `follow`."""
        v = self.vocab
        head = self._split_held()
        ends = [follow + t for t in then]
        text = b""
        while True:
            if head:  # fixed text before the number may merge with its first digits (': 1' is ' ' + '1')
                cands = [t for t in v.starting_with(head)
                         if v.pieces[t] == head or v.pieces[t][len(head):].lstrip(b"-").isdigit()]
                piece = v.pieces[self._pick(cands)][len(head):]
                head = b""
            else:
                digits = sum(c in b"0123456789" for c in text)
                mask = v.digits.copy() if digits < 15 else np.zeros_like(v.digits)
                if not integer and b"." not in text and digits:
                    mask |= v.dotted
                if not text:
                    mask[v.prefixes_of(b"-")] = True
                if text.rstrip(b"-").strip(b".") and text[-1:] != b".":
                    mask[[t for e in ends for t in v.prefixes_of(e)]] = True
                piece = v.pieces[self._pick(mask)]
                if text and not piece[:1].isdigit() and piece[:1] != b".":
                    self.ahead = piece
                    self.force(follow)
                    return json.loads(text)
            text += piece

    def _close(self, piece: bytes, follow: bytes) -> None:
        self.ahead = piece[1:]
        self.force(follow)


def _chars(b: bytes) -> int:
    return sum(1 for x in b if x < 0x80 or x >= 0xC0)


def _fits(rest: bytes, min_len: int, max_len: int, ends: list[bytes]) -> bool:
    """Whether `rest`, written right after a string's opening quote, is allowed."""
    if rest.startswith(b'"'):
        return min_len == 0 and any(e.startswith(rest) for e in ends)
    return _chars(rest) <= max_len and not any(x < 0x20 or x in (0x22, 0x5C, 0x7F) for x in rest)


# -- compiling a schema into starts and continuations ------------------------------------
# A continuation finishes a value after its start literal, then writes `follow` (fixed text);
# `then` are the literal options of the decision that comes after `follow`.
Cont = Callable[[Session, bytes, list], Any]


class Compiler:
    def __init__(self, root: dict):
        self.root = root

    def resolve(self, s: dict) -> dict:
        while "$ref" in s:
            ref = s["$ref"]
            if not ref.startswith("#/"):
                raise Unsupported(f"$ref {ref}")
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node[part]
            s = node
        return s

    def starts(self, s: dict) -> list[tuple[bytes, Cont]]:
        """The literal texts a value of schema `s` can start with, each with its continuation."""
        s = self.resolve(s)
        if "const" in s:
            return [(_lit(s["const"]), _done(s["const"]))]
        if "enum" in s:
            return [(_lit(v), _done(v)) for v in s["enum"]]
        if "anyOf" in s or "oneOf" in s:
            branches = s.get("anyOf") or s["oneOf"]
            if s.get("type") == "object" or all(self.resolve(b).get("type") == "object" for b in branches):
                return self._tagged(branches)
            return _distinct([st for b in branches for st in self.starts(b)])
        t = s.get("type")
        if isinstance(t, list):
            return _distinct([st for one in t for st in self.starts({**s, "type": one})])
        if t == "null":
            return [(b"null", _done(None))]
        if t == "boolean":
            return [(b"true", _done(True)), (b"false", _done(False))]
        if t in ("integer", "number"):
            extra = set(s) - {"type", "title", "description", "default"}
            if extra:
                raise Unsupported(f"number keywords {sorted(extra)}")
            return [(b"", lambda ses, follow, then: ses.number(t == "integer", follow, then))]
        if t == "string":
            extra = set(s) - {"type", "minLength", "maxLength", "title", "description", "default"}
            if extra:
                raise Unsupported(f"string keywords {sorted(extra)}")
            lo, hi = int(s.get("minLength", 0)), int(s.get("maxLength", 10_000))
            return [(b'"', lambda ses, follow, then: ses.string(lo, hi, follow, then))]
        if t == "object":
            props = list(self._props(s))
            if not props:
                return [(b"{}", _done({}))]
            key, ps = props[0]
            return [(b"{" + _lit(key) + b": " + lit, self._object_rest(props[1:], key, cont))
                    for lit, cont in self.starts(ps)]
        if t == "array":
            return self._array(s)
        raise Unsupported(f"schema {json.dumps(s)[:80]}")

    def lits(self, s: dict) -> list[bytes]:
        return [lit for lit, _ in self.starts(s)]

    def _props(self, s: dict):
        extra = set(s) - {"type", "properties", "required", "title", "description", "additionalProperties", "$defs"}
        if extra:
            raise Unsupported(f"object keywords {sorted(extra)}")
        return s.get("properties", {}).items()

    def value(self, ses: Session, s: dict, follow: bytes, then: list[bytes]) -> Any:
        opts = self.starts(s)
        i = ses.choose([lit for lit, _ in opts])
        return opts[i][1](ses, follow, then)

    def _sequence(self, ses: Session, first: Cont | None, value0: Any, rest: list, sep: Callable[[int], bytes],
                  close: bytes, follow: bytes, then: list[bytes]) -> list:
        """Values of an object or tuple whose first value is started: `first` finishes it."""
        out = []
        for j in range(len(rest) + 1):
            last = j == len(rest)
            f = close + follow if last else sep(j + 1)
            t = then if last else self.lits(rest[j])
            if j == 0:
                if first is None:
                    ses.force(f)
                    out.append(value0)
                else:
                    out.append(first(ses, f, t))
            else:
                out.append(self.value(ses, rest[j - 1], f, t))
        return out

    def _object_rest(self, props: list, key0: str, cont0: Cont | None = None, value0: Any = None) -> Cont:
        """Finish an object whose first key and the start of its value are written."""
        for _, ps in props:
            self.starts(ps)  # validate eagerly, so unsupported schemas fail at compile time
        keys = [key0] + [k for k, _ in props]

        def cont(ses: Session, follow: bytes, then: list) -> dict:
            values = self._sequence(ses, cont0, value0, [ps for _, ps in props],
                                    lambda j: b", " + _lit(keys[j]) + b": ", b"}", follow, then)
            return dict(zip(keys, values))
        return cont

    def _tagged(self, branches: list) -> list[tuple[bytes, Cont]]:
        """anyOf of objects told apart by their first property's const/enum value."""
        out: list[tuple[bytes, Cont]] = []
        key0 = None
        for b in branches:
            b = self.resolve(b)
            props = list(self._props(b))
            if not props:
                raise Unsupported("anyOf branch without properties")
            key, ps = props[0]
            ps = self.resolve(ps)
            if key0 not in (None, key) or not ("const" in ps or "enum" in ps):
                raise Unsupported("anyOf of objects without a common const/enum first property")
            key0 = key
            for v in ([ps["const"]] if "const" in ps else ps["enum"]):
                out.append((b"{" + _lit(key) + b": " + _lit(v), self._object_rest(props[1:], key, None, v)))
        return out

    def _array(self, s: dict) -> list[tuple[bytes, Cont]]:
        """Starts of an array: '[' joined with each start of its first item (or '[]')."""
        if "prefixItems" in s:
            items = s["prefixItems"]
            if s.get("items") not in (None, False) or s.get("minItems", len(items)) != len(items) \
                    or s.get("maxItems", len(items)) != len(items):
                raise Unsupported("prefixItems with a variable length")
            if not items:
                return [(b"[]", _done([]))]
            for it in items[1:]:
                self.starts(it)

            def tuple_rest(cont0: Cont) -> Cont:
                def cont(ses: Session, follow: bytes, then: list) -> list:
                    return self._sequence(ses, cont0, None, items[1:], lambda j: b", ", b"]", follow, then)
                return cont
            return [(b"[" + lit, tuple_rest(c)) for lit, c in self.starts(items[0])]
        item = s.get("items", {})
        if not isinstance(item, dict) or not item:
            raise Unsupported("array without an item schema")
        lo, hi = int(s.get("minItems", 0)), int(s.get("maxItems", 1 << 30))
        starts = self.starts(item)

        def options(n: int) -> list[bytes]:
            """After n items: another item, or the closing bracket."""
            return ([] if n >= hi else [b", " + lit for lit, _ in starts]) + ([b"]"] if n >= lo else [])

        def list_rest(cont0: Cont) -> Cont:
            def cont(ses: Session, follow: bytes, then: list) -> list:
                out: list = [cont0(ses, b"", options(1))]
                while True:
                    opts = options(len(out))
                    i = ses.choose(opts)
                    if opts[i] == b"]":
                        ses.force(follow)
                        return out
                    out.append(starts[i][1](ses, b"", options(len(out) + 1)))
            return cont
        out = [(b"[" + lit, list_rest(c)) for lit, c in starts] if hi > 0 else []
        if lo == 0:
            out.append((b"[]", _done([])))
        return out


def _distinct(starts: list[tuple[bytes, Cont]]) -> list[tuple[bytes, Cont]]:
    lits = [lit for lit, _ in starts]
    if any(a != b and b.startswith(a) for a in lits for b in lits):
        raise Unsupported(f"alternatives that start alike: {lits}")
    return starts


def _common_prefix(items: list[bytes]) -> bytes:
    first, last = min(items), max(items)
    k = 0
    while k < min(len(first), len(last)) and first[k] == last[k]:
        k += 1
    return first[:k]


def _done(value: Any) -> Cont:
    def cont(ses: Session, follow: bytes, then: list) -> Any:
        ses.force(follow)
        return value
    return cont


@dataclass
class Program:
    """A compiled schema: run it on a prompt to get the answer object."""
    compiler: Compiler

    def run(self, llm: Any, prompt: list[int], max_tokens: int | None) -> tuple[Any, Session]:
        """Decode greedily under the schema; returns (value, session)."""
        ses = Session(llm, prompt, max_tokens)
        value = self.compiler.value(ses, self.compiler.root, b"", [b""])
        return value, ses


def compile_schema(schema: dict) -> Program:
    """Check that `schema` is supported and prepare it for decoding (raises Unsupported)."""
    c = Compiler(schema)
    starts = c.starts(schema)
    if not all(lit.startswith(b"{") for lit, _ in starts):
        raise Unsupported("the answer must be a JSON object")
    return Program(c)
