"""Folder runs: find articles, skip up-to-date outputs, write atomically, log failures, go on.

Layout of an output folder:
  <relative/path/stem>.json   one record per article (mirrors the input tree)
  records.jsonl               all current records, one per line, rebuilt atomically
  errors.jsonl                one line per article that failed in the last run
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

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
        if text is None:
            text = read_article(path)
        key = run_key(identity, text)
        if use_existing and _is_current(out, key):
            return Outcome(name, "skipped", str(out))
        record = summarizer.summarize(text)
        record.provenance.run_key = key
        record.provenance.source = source
        atomic_write(out, record.model_dump_json(indent=2) + "\n")
        return Outcome(name, "done", str(out), seconds=time.perf_counter() - t0)
    except ArticleError as e:
        msg = str(e) if name in str(e) else f"{name}: {e}"
        return Outcome(name, "failed", None, "input", msg, time.perf_counter() - t0)
    except ExtractionError as e:
        return Outcome(name, "failed", None, e.kind,
                       f"{e} (attempts={e.attempts}, usage={e.usage})", time.perf_counter() - t0,
                       attempts=e.attempts, usage=e.usage)
    except OSError as e:
        return Outcome(name, "failed", None, "io",
                       f"{name}: cannot read the article or write its output ({e.strerror or e}); "
                       f"check that the file still exists and is readable and the output folder writable",
                       time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - one broken article must not sink the batch
        return Outcome(name, "failed", None, "internal", f"{type(e).__name__}: {e}",
                       time.perf_counter() - t0)


def run_parallel(jobs: list[Callable[[], T]], concurrency: int, on_result: Callable[[T], None]) -> None:
    """Run jobs in order (concurrency 1) or on a bounded thread pool; report each outcome."""
    if concurrency <= 1:
        for job in jobs:
            on_result(job())
        return
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for f in as_completed([pool.submit(job) for job in jobs]):
            on_result(f.result())


def summarize_folder(input_path: str | Path, output_dir: str | Path, summarizer: Summarizer, *,
                     concurrency: int = 1, use_existing: bool = True,
                     on_progress: Callable[[Outcome], None] | None = None,
                     on_start: Callable[[int], None] | None = None) -> BatchResult:
    """Summarise every article under input_path into output_dir; failures are logged, not raised."""
    input_path, output_dir = Path(input_path), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    articles = find_articles(input_path, output_dir)
    if on_start:
        on_start(len(articles))
    identity = summarizer.identity
    result = BatchResult()
    lock = threading.Lock()

    def record(o: Outcome) -> None:
        with lock:
            result.outcomes.append(o)
        if on_progress:
            on_progress(o)

    jobs = [lambda p=p, rel=rel: summarize_one(summarizer, str(rel), output_dir / rel.with_suffix(".json"),
                                               identity, path=p, use_existing=use_existing)
            for p, rel in articles]
    try:
        run_parallel(jobs, concurrency, record)
    finally:
        _write_indexes(output_dir, articles, result)
    return result


def _write_indexes(output_dir: Path, articles: list[tuple[Path, Path]], result: BatchResult) -> None:
    lines = []
    for _, rel in articles:
        out = output_dir / rel.with_suffix(".json")
        try:
            lines.append(json.dumps(json.loads(out.read_text(encoding="utf-8")), ensure_ascii=False))
        except (OSError, ValueError):
            continue
    atomic_write(output_dir / "records.jsonl", "".join(line + "\n" for line in lines))
    errors = [{"file": o.path, "kind": o.error_kind, "message": o.message,
               **({"attempts": o.attempts, "usage": o.usage} if o.attempts is not None else {})}
              for o in result.failed]
    atomic_write(output_dir / "errors.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
