"""Folder runs: find articles, skip up-to-date outputs, write atomically, log failures, go on.

Layout of an output folder:
  <relative/path/stem>.json   one record per article (mirrors the input tree)
  records.jsonl               all current records, one per line, rebuilt atomically
  errors.jsonl                one line per article that failed in the last run

Remote backends with concurrency > 1 run on one asyncio event loop (at most N articles in
flight, `Summarizer.asummarize`); otherwise articles run one at a time (or, for a backend
without async calls, on a bounded thread pool). Both give the same files.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterator, TypeVar

from .backends import ExtractionError
from .pipeline import ArticleError, Summarizer
from .schema import ArticleRecord

T = TypeVar("T")
SUFFIXES = (".txt", ".md")


@dataclass
class Outcome:
    path: str
    status: str  # "done", "skipped", "failed"
    output: str | None = None
    error_kind: str | None = None
    message: str | None = None
    seconds: float = 0.0
    attempts: int | None = None  # model calls spent on a failed article (extraction errors)
    usage: dict | None = None


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def atomic_write(path: Path, data: str) -> None:
    """Write text to path via a temp file in the same folder and os.replace (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def find_articles(input_path: Path, output_dir: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, relative path) of every *.txt/*.md under input_path, sorted; skips the output folder.

    Follows symlinks to files and folders but never enters the same real folder twice
    (so a symlink loop ends), and never yields a path that would escape the output folder.
    """
    input_path = Path(input_path)
    if input_path.is_file():
        return [(input_path, Path(input_path.name))]
    if not input_path.is_dir():
        raise FileNotFoundError(f"input not found: {input_path}")
    out_real = output_dir.resolve() if output_dir else None
    found, seen = [], set()

    def walk(d: Path, rel: Path) -> Iterator[tuple[Path, Path]]:
        real = d.resolve()
        if real in seen or (out_real and real == out_real):
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            p = Path(e.path)
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    yield from walk(p, rel / e.name)
                elif e.is_file() and p.suffix.lower() in SUFFIXES:
                    yield p, rel / e.name
            except OSError:
                continue

    for p, rel in walk(input_path, Path()):
        found.append((p, rel))
    return found


def read_article(path: Path) -> str:
    """Read an article file as text: UTF-8 (BOM allowed), else cp1252; binary files are refused."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ArticleError(f"{path}: looks binary (NUL bytes); only plain-text articles can be summarised")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")  # the usual legacy encoding of scraped Western text
        except UnicodeDecodeError as e:
            raise ArticleError(f"{path}: not UTF-8 or cp1252 text ({e}); convert it to UTF-8") from e
    head = text[:2000].lstrip().lower()
    if head.startswith(("<!doctype html", "<html")) or ("<body" in head and "</" in head):
        raise ArticleError(f"{path}: looks like an HTML page; extract the article text to a .txt file first "
                           f"(offsets must index the text that was read)")
    return text


def run_key(identity: dict, text: str) -> str:
    """Hash of the article and everything that determines its record."""
    h = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    h.update(hashlib.sha256(text.encode("utf-8")).digest())
    return h.hexdigest()


def _is_current(out: Path, key: str) -> bool:
    try:
        data = json.loads(out.read_text(encoding="utf-8"))
        return data.get("provenance", {}).get("run_key") == key and ArticleRecord.model_validate(data) is not None
    except (OSError, ValueError):
        return False


def summarize_one(summarizer: Summarizer, source: str, out: Path, identity: dict, *,
                  path: Path | None = None, text: str | None = None, use_existing: bool = True) -> Outcome:
    """One article (read from `path`, or given as `text`) → `out`, atomically; never raises.

    The unit of work of both folder runs and dataset maps: an up-to-date `out` (same article
    hash and identity) is kept, any failure becomes an Outcome with a kind and a message.
    """
    name = str(path) if path is not None else source
    t0 = time.perf_counter()
    try:
        text, key, current = _prepare(out, identity, path, text, use_existing)
        if current:
            return Outcome(name, "skipped", str(out))
        _save(summarizer.summarize(text), key, source, out)
        return Outcome(name, "done", str(out), seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - one broken article must not sink the batch
        return _failed(name, e, t0)


async def asummarize_one(summarizer: Summarizer, source: str, out: Path, identity: dict, *,
                         path: Path | None = None, text: str | None = None, use_existing: bool = True) -> Outcome:
    """`summarize_one` on the running event loop: model calls awaited, file I/O in a worker thread."""
    name = str(path) if path is not None else source
    t0 = time.perf_counter()
    try:
        text, key, current = await asyncio.to_thread(_prepare, out, identity, path, text, use_existing)
        if current:
            return Outcome(name, "skipped", str(out))
        record = await summarizer.asummarize(text)
        await asyncio.to_thread(_save, record, key, source, out)
        return Outcome(name, "done", str(out), seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - one broken article must not sink the batch
        return _failed(name, e, t0)


def _prepare(out: Path, identity: dict, path: Path | None, text: str | None,
             use_existing: bool) -> tuple[str, str, bool]:
    """The article's text, its run key, and whether `out` already holds its up-to-date record."""
    if text is None:
        text = read_article(path)
    key = run_key(identity, text)
    return text, key, use_existing and _is_current(out, key)


def _save(record: ArticleRecord, key: str, source: str, out: Path) -> None:
    record.provenance.run_key = key
    record.provenance.source = source
    atomic_write(out, record.model_dump_json(indent=2) + "\n")


def _failed(name: str, e: Exception, t0: float) -> Outcome:
    """A failed article as an Outcome with its error kind and message (and model attempts and usage)."""
    seconds = time.perf_counter() - t0
    if isinstance(e, ArticleError):
        msg = str(e) if name in str(e) else f"{name}: {e}"
        return Outcome(name, "failed", None, "input", msg, seconds)
    if isinstance(e, ExtractionError):
        return Outcome(name, "failed", None, e.kind, f"{e} (attempts={e.attempts}, usage={e.usage})", seconds,
                       attempts=e.attempts, usage=e.usage)
    if isinstance(e, OSError):
        return Outcome(name, "failed", None, "io",
                       f"{name}: cannot read the article or write its output ({e.strerror or e}); "
                       f"check that the file still exists and is readable and the output folder writable", seconds)
    return Outcome(name, "failed", None, "internal", f"{type(e).__name__}: {e}", seconds)


def run_parallel(jobs: list[Callable[[], T]], concurrency: int, on_result: Callable[[T], None]) -> None:
    """Run jobs in order (concurrency 1) or on a bounded thread pool; report each outcome."""
    if concurrency <= 1:
        for job in jobs:
            on_result(job())
        return
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for f in as_completed([pool.submit(job) for job in jobs]):
            on_result(f.result())


# Seconds between the starts of run_async's workers: about the longest stretch of client CPU in an
# article (its second step builds the sentence model and its tool schema, ~4-5 ms here).
_STAGGER_S = 0.005


async def run_async(jobs: list[Callable[[], Awaitable[T]]], concurrency: int, on_result: Callable[[T], None]) -> None:
    """Run async jobs on the running loop, started in order, at most `concurrency` at a time; report each outcome.

    The `concurrency` workers start _STAGGER_S apart. Started together, against an endpoint
    whose replies all take about as long, the articles in flight stay in lockstep round
    after round and all reach their costliest step at the same moment, each waiting on the
    loop for every one ahead of it (at concurrency 32 and 200 ms per reply, one request in
    flight per article: 0.75 of the latency-bound ideal in lockstep, 0.80 staggered; with
    an article's sentence calls sent together under the backend's request slots: 0.82-0.83
    in lockstep, 0.84-0.88 staggered, for a ramp of 0.16 s).
    """
    pending = iter(jobs)

    async def worker(i: int) -> None:
        await asyncio.sleep(i * _STAGGER_S)
        for job in pending:  # one iterator shared by the workers: each job is taken once
            on_result(await job())

    await asyncio.gather(*(worker(i) for i in range(max(1, min(concurrency, len(jobs))))))


@dataclass
class Unit:
    """One article of a run: its source name, its output file, and its file (or its text)."""
    source: str
    out: Path
    path: Path | None = None
    text: str | None = None


def summarize_folder(input_path: str | Path, output_dir: str | Path, summarizer: Summarizer, *,
                     concurrency: int = 1, use_existing: bool = True,
                     on_progress: Callable[[Outcome], None] | None = None,
                     on_start: Callable[[int], None] | None = None) -> BatchResult:
    """Summarise every article under input_path into output_dir; failures are logged, not raised.

    At concurrency > 1 a backend with async calls (openai) runs the articles on one asyncio
    event loop, at most `concurrency` in flight; otherwise one at a time (a backend without
    async calls, or a caller already inside an event loop: on a thread pool).
    """
    input_path, output_dir = Path(input_path), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    articles = find_articles(input_path, output_dir)
    if on_start:
        on_start(len(articles))
    result = BatchResult()
    lock = threading.Lock()

    def record(o: Outcome) -> None:
        with lock:
            result.outcomes.append(o)
        if on_progress:
            on_progress(o)

    units = [Unit(str(rel), output_dir / rel.with_suffix(".json"), path=p) for p, rel in articles]
    try:
        summarize_units(summarizer, units, concurrency, lambda i, o: record(o), use_existing=use_existing)
    finally:
        _write_indexes(output_dir, articles, result)
    return result


def summarize_units(summarizer: Summarizer, units: list[Unit], concurrency: int,
                    on_result: Callable[[int, Outcome], None], *, use_existing: bool = True) -> None:
    """Every unit through `summarize_one` (or `asummarize_one`), reporting (index, outcome) as each ends.

    The one way folder runs and dataset maps run their articles: at concurrency > 1 a backend
    with async calls (openai) runs them on one asyncio event loop, at most `concurrency` model
    requests in flight; otherwise one at a time (a backend without async calls, or a caller
    already inside an event loop: on a thread pool of `concurrency`).
    """
    identity = summarizer.identity
    on_loop = concurrency > 1 and summarizer.backend.supports_async and not _loop_running()
    one = asummarize_one if on_loop else summarize_one

    def job(i: int, u: Unit):
        kw = dict(path=u.path, text=u.text, use_existing=use_existing)
        if on_loop:
            async def run() -> tuple[int, Outcome]:
                return i, await one(summarizer, u.source, u.out, identity, **kw)
            return run
        return lambda: (i, one(summarizer, u.source, u.out, identity, **kw))

    jobs = [job(i, u) for i, u in enumerate(units)]
    with _frozen_heap():
        if on_loop:
            asyncio.run(_run_on_loop(summarizer, jobs, concurrency, lambda r: on_result(*r)))
        else:
            run_parallel(jobs, concurrency, lambda r: on_result(*r))


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the objects alive at the start of a run (modules, schemas, clients) out of the garbage
    collector's full passes during it (`gc.freeze`): each pass over them paused every article in
    flight for ~0.1 s, and the collector took ~14 % of the client's CPU at concurrency 32.
    (Garbage frozen with them is collected after the run.) Left alone if the process has
    frozen objects of its own."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _run_on_loop(summarizer: Summarizer, jobs: list, concurrency: int, on_result: Callable) -> None:
    """The async jobs on this loop, with the backend's async client opened for `concurrency` and closed after."""
    await summarizer.backend.astart(concurrency)
    try:
        await run_async(jobs, concurrency, on_result)
    finally:
        await summarizer.backend.aclose()


def _loop_running() -> bool:
    """Whether this thread already runs an event loop (then asyncio.run is impossible: use threads)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _write_indexes(output_dir: Path, articles: list[tuple[Path, Path]], result: BatchResult) -> None:
    lines = []
    for _, rel in articles:
        out = output_dir / rel.with_suffix(".json")
        try:
            lines.append(json.dumps(json.loads(out.read_text(encoding="utf-8")), ensure_ascii=False))
        except (OSError, ValueError):
            continue
    atomic_write(output_dir / "records.jsonl", "".join(line + "\n" for line in lines))
    order = {str(p): i for i, (p, _) in enumerate(articles)}  # input order, whatever the completion order
    failed = sorted(result.failed, key=lambda o: order.get(o.path, len(order)))
    errors = [{"file": o.path, "kind": o.error_kind, "message": o.message,
               **({"attempts": o.attempts, "usage": o.usage} if o.attempts is not None else {})}
              for o in failed]
    atomic_write(output_dir / "errors.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
