"""Large corpora through Hugging Face `datasets`: map the summarizer over a Dataset.

    from datasets import load_dataset
    from summarizer import Summarizer
    from summarizer.corpus import summarize_dataset

    ds = load_dataset("parquet", data_files="articles.parquet", split="train")
    s = Summarizer("openai", "Qwen/Qwen2.5-7B-Instruct", base_url="http://vllm:8000/v1")
    out = summarize_dataset(ds, s, "runs/articles", concurrency=32)
    out.to_parquet("runs/articles.parquet")

Each row goes through `batch.summarize_one`, the unit of work of the CLI's folder runs:
its record is written atomically to `<work_dir>/<row id>.json`, and a rerun after an
interruption keeps every up-to-date record and recomputes only the rest (resumable).
Rows are processed in batches (`Dataset.map(batched=True)`), each batch the way the
CLI runs a folder (`batch.summarize_units`): against a remote endpoint at concurrency > 1 on
one asyncio event loop with at most `concurrency` requests in flight, so the endpoint stays
busy; otherwise one row at a time.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from .batch import Outcome, Unit, summarize_units
from .pipeline import Summarizer

COLUMNS = ("record", "status", "error_kind", "error", "n_actors", "n_positions", "n_demands", "n_figures")


def row_file(work_dir: Path, row_id: str) -> Path:
    """A safe, unique file name for a row id."""
    stem = re.sub(r"[^\w.-]+", "_", row_id)[:80].strip("._") or "row"
    return work_dir / f"{stem}-{hashlib.sha1(row_id.encode('utf-8')).hexdigest()[:10]}.json"


def summarize_dataset(dataset: Any, summarizer: Summarizer, work_dir: str | Path, *, text_column: str = "text",
                      id_column: str | None = "id", batch_size: int = 64, concurrency: int = 8,
                      use_existing: bool = True) -> Any:
    """Map the summarizer over a `datasets.Dataset`; returns it with the result columns added.

    Columns added: `record` (the ArticleRecord as JSON text, or None), `status` (done,
    skipped — already up to date —, failed), `error_kind`, `error`, and the item counts.
    Without `id_column` the row index is the id. A failing row never stops the map.
    """
    if text_column not in dataset.column_names:
        raise ValueError(f"no column {text_column!r} in the dataset (columns: {', '.join(dataset.column_names)})")
    if id_column is not None and id_column not in dataset.column_names:
        raise ValueError(f"no id column {id_column!r}; pass id_column=None to use row indices")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)

    def process(batch: dict, indices: list[int]) -> dict:
        texts = batch[text_column]
        ids = [str(x) for x in batch[id_column]] if id_column else [str(i) for i in indices]
        results: dict[int, Outcome] = {}
        units, where = [], []
        for i, (rid, text) in enumerate(zip(ids, texts)):
            if isinstance(text, str):
                units.append(Unit(rid, row_file(work, rid), text=text))
                where.append(i)
            else:
                results[i] = Outcome(rid, "failed", None, "input",
                                     f"row {rid}: {text_column} is {type(text).__name__}, not text")
        summarize_units(summarizer, units, concurrency, lambda k, o: results.__setitem__(where[k], o),
                        use_existing=use_existing)
        cols: dict[str, list] = {c: [] for c in COLUMNS}
        for i in range(len(texts)):
            o = results[i]
            rec = None
            if o.output:
                rec = json.loads(Path(o.output).read_text(encoding="utf-8"))
            cols["record"].append(json.dumps(rec, ensure_ascii=False) if rec else None)
            cols["status"].append(o.status)
            cols["error_kind"].append(o.error_kind)
            cols["error"].append(o.message)
            for f in ("actors", "positions", "demands", "figures"):
                cols[f"n_{f}"].append(len(rec[f]) if rec else None)
        return cols

    from datasets import Features, Value

    features = Features({**dataset.features,
                         **{c: Value("int64") if c.startswith("n_") else Value("string") for c in COLUMNS}})
    return dataset.map(process, batched=True, batch_size=batch_size, with_indices=True, features=features,
                       load_from_cache_file=False, desc="summarising")
