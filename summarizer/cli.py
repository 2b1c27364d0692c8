"""Command line: a thin layer over the Python API (summarize, show, eval)."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Evidence-grounded records of actors, positions, demands and figures in news articles.")
err = Console(stderr=True)
out = Console()

BackendOpt = typer.Option("local", "--backend", "-b", help="local (embedded llama.cpp) or openai (any compatible endpoint)")
ModelOpt = typer.Option(None, "--model", "-m", help="local: qwen2.5-coder-1.5b (default), qwen2.5-coder-0.5b or a .gguf path; openai: model name")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL)")
ApiKeyOpt = typer.Option(None, "--api-key", help="API key (default $OPENAI_API_KEY)")
RetriesOpt = typer.Option(2, "--max-retries", min=0, help="re-asks after a validation error, per model call")
TimeoutOpt = typer.Option(None, "--timeout", min=0.1, help="openai: seconds to wait for one response (default 120, $SUMMARIZER_TIMEOUT)")


def _summarizer(backend: str, model: Optional[str], base_url: Optional[str], api_key: Optional[str],
                max_retries: int, prompts: Optional[Path] = None, cache: bool = True,
                timeout: Optional[float] = None, kv_dir: Optional[Path] = None):
    from .pipeline import Summarizer

    extra = {"timeout": timeout} if timeout is not None and backend == "openai" else {}
    if kv_dir is not None and backend == "local":
        extra["kv_dir"] = kv_dir
    try:
        return Summarizer(backend, model, base_url=base_url, api_key=api_key, max_retries=max_retries,
                          prompts_dir=str(prompts) if prompts else None, cache=cache, **extra)
    except Exception as e:  # noqa: BLE001 - configuration errors end the command with a clear message
        err.print(f"[red]error:[/red] cannot start backend {backend!r}: {e}")
        raise typer.Exit(2) from e


@app.command()
def summarize(
    input: Path = typer.Argument(..., help="folder of *.txt / *.md articles (searched recursively) or one file"),
    output: Path = typer.Option(..., "--output", "-o", help="output folder"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    api_key: Optional[str] = ApiKeyOpt, max_retries: int = RetriesOpt, timeout: Optional[float] = TimeoutOpt,
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, help="remote backends: model requests in flight at once (articles on one asyncio event loop, each sending its sentence calls together)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute everything: ignore up-to-date outputs and the response cache"),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="folder of prompt files (default: packaged prompts/)"),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v: per-article lines, -vv: debug logs"),
) -> None:
    """Summarise every article in INPUT into OUTPUT/<stem>.json, records.jsonl and errors.jsonl."""
    from .batch import summarize_folder

    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.WARNING)
    if verbose < 2:  # instructor logs every exhausted retry; our own failure line says it once
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
    if not input.exists():
        err.print(f"[red]error:[/red] input not found: {input}")
        raise typer.Exit(2)
    s = _summarizer(backend, model, base_url, api_key, max_retries, prompts, cache=not no_cache, timeout=timeout)
    if backend == "local" and concurrency > 1:
        err.print("note: the local backend runs one article at a time; --concurrency ignored")
        concurrency = 1
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err,
                        transient=False)
    task = progress.add_task("summarising", total=None)

    def on_start(n: int) -> None:
        progress.update(task, total=n)

    def on_progress(o) -> None:
        progress.advance(task)
        if o.status == "failed":
            progress.console.print(f"[red]failed[/red] {escape(o.path)}: {o.error_kind}: {escape(o.message or '')}",
                                   soft_wrap=True)
        elif verbose:
            progress.console.print(f"{o.status} {o.path} ({o.seconds:.1f}s)")

    try:
        with progress:
            result = summarize_folder(input, output, s, concurrency=concurrency, use_existing=not no_cache,
                                      on_progress=on_progress, on_start=on_start)
    except KeyboardInterrupt:
        err.print("interrupted: finished articles are saved; rerun the same command to resume")
        raise typer.Exit(130)
    finally:
        s.close()
    done, skipped, failed = result.count("done"), result.count("skipped"), len(result.failed)
    err.print(f"{done} summarised, {skipped} up to date, {failed} failed → {output}"
              + (f" (see {output / 'errors.jsonl'})" if failed else ""))
    if failed:
        raise typer.Exit(1)


@app.command("map")
def map_(
    data: Path = typer.Argument(..., help="a .parquet, .jsonl/.json or .csv file with one article per row"),
    output: Path = typer.Option(..., "--output", "-o", help="result file (.parquet, .jsonl or .csv): the input columns plus the results"),
    text_column: str = typer.Option("text", "--text-column", help="column holding the article text"),
    id_column: Optional[str] = typer.Option("id", "--id-column", help="column with a unique row id ('' for the row index)"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="per-row records, for resuming (default: OUTPUT.work/)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="rows per Dataset.map batch"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    api_key: Optional[str] = ApiKeyOpt, max_retries: int = RetriesOpt, timeout: Optional[float] = TimeoutOpt,
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="remote backends: model requests in flight at once, per batch of rows"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute every row"),
) -> None:
    """Summarise every row of a dataset file through `datasets` (resumable); write the rows with result columns."""
    from datasets import load_dataset

    from .corpus import summarize_dataset

    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    kinds = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
    if data.suffix not in kinds or output.suffix not in kinds:
        err.print(f"[red]error:[/red] use .parquet, .jsonl, .json or .csv files (got {data.name} → {output.name})")
        raise typer.Exit(2)
    if not data.is_file():
        err.print(f"[red]error:[/red] input not found: {data}")
        raise typer.Exit(2)
    ds = load_dataset(kinds[data.suffix], data_files=str(data), split="train")
    s = _summarizer(backend, model, base_url, api_key, max_retries, cache=not no_cache, timeout=timeout)
    if backend == "local":
        concurrency = 1
    try:
        res = summarize_dataset(ds, s, work_dir or output.with_name(output.name + ".work"), text_column=text_column,
                                id_column=id_column or None, batch_size=batch_size, concurrency=concurrency,
                                use_existing=not no_cache)
    except ValueError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: finished rows are saved; rerun the same command to resume")
        raise typer.Exit(130)
    finally:
        s.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    getattr(res, {"parquet": "to_parquet", "json": "to_json", "csv": "to_csv"}[kinds[output.suffix]])(str(tmp))
    tmp.replace(output)
    st = res["status"]
    err.print(f"{st.count('done')} summarised, {st.count('skipped')} up to date, {st.count('failed')} failed → {output}")
    if st.count("failed"):
        raise typer.Exit(1)


@app.command()
def show(file: Path = typer.Argument(..., help="a record .json written by summarize")) -> None:
    """Print a record readably: actors, positions, demands with their quotes, figures."""
    from .schema import ArticleRecord

    try:
        rec = ArticleRecord.model_validate_json(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        err.print(f"[red]error:[/red] {file}: not a readable record: {e}")
        raise typer.Exit(2)
    out.print(f"[bold]{rec.headline or file.stem}[/bold]" + (f"  ({rec.published})" if rec.published else ""))
    if rec.summary:
        out.print(rec.summary)
    t = Table(title="Actors")
    for c in ("name", "kind", "role", "country", "mentions"):
        t.add_column(c)
    for a in rec.actors:
        t.add_row(a.name, a.kind, a.role or "", a.country or "", "; ".join(a.mentions))
    out.print(t)
    t = Table(title="Demands")
    for c in ("actor", "addressees", "action", "quote"):
        t.add_column(c)
    for d in rec.demands:
        t.add_row(d.actor, ", ".join(d.addressees), d.action, f"“{d.evidence.quote}”")
    out.print(t)
    t = Table(title="Positions")
    for c in ("actor", "topic", "stance", "quote"):
        t.add_column(c)
    for p in rec.positions:
        t.add_row(p.actor, p.topic, p.stance, f"“{p.evidence.quote}”")
    out.print(t)
    t = Table(title="Figures")
    for c in ("value", "unit", "qualifier", "quote"):
        t.add_column(c)
    for f in rec.figures:
        t.add_row(f"{f.value:g}", f.unit, f.qualifier, f"“{f.evidence.quote}”")
    out.print(t)
    if rec.provenance:
        p = rec.provenance
        out.print(f"[dim]{p.backend}/{p.model} prompt {p.prompt_version} · {p.latency_s:.1f}s · "
                  f"{p.usage.prompt_tokens}+{p.usage.completion_tokens} tokens · {p.attempts} calls · "
                  f"dropped {p.dropped or 0}[/dim]")


@app.command("eval")
def eval_(
    fixtures: Path = typer.Option(Path("fixtures"), "--fixtures", "-f", help="fixture folder (<stem>.txt + <stem>.json)"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    api_key: Optional[str] = ApiKeyOpt, max_retries: int = RetriesOpt, timeout: Optional[float] = TimeoutOpt,
    out_path: Optional[Path] = typer.Option(None, "--out", help="write the JSON report here"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="an earlier JSON report to compare with"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML report here"),
    export: Optional[Path] = typer.Option(None, "--export", help="write per-article rows as PATH.parquet and PATH.jsonl"),
    check: Optional[Path] = typer.Option(None, "--check", help="thresholds TOML: exit 1 if any score falls below"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="response cache/replay folder (default: user cache)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="call the model for everything"),
    naive: bool = typer.Option(False, "--naive", help="score the naive one-prompt baseline instead"),
    only: Optional[str] = typer.Option(None, "--only", help="only fixtures whose id contains this text"),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="skip fixtures whose id contains this text (repeatable)"),
    prune_cache: bool = typer.Option(False, "--prune-cache", help="after the run, delete --cache-dir entries it did not use"),
) -> None:
    """Run the extractor over a fixture folder, score it, print the table and write reports."""
    from summarizer.evals.runner import check_thresholds, compare, load_fixtures, run_eval

    try:
        fxs = load_fixtures(fixtures)
    except FileNotFoundError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2)
    if only:
        fxs = [f for f in fxs if only in f.id]
    for ex in exclude or []:
        fxs = [f for f in fxs if ex not in f.id]
    if prune_cache and (not cache_dir or no_cache or only or exclude):
        err.print("[red]error:[/red] --prune-cache needs --cache-dir and a run over every fixture "
                  "(no --only, --exclude or --no-cache): it deletes what this run did not use")
        raise typer.Exit(2)
    cache = False if no_cache else (cache_dir or True)
    s = _summarizer(backend, model, base_url, api_key, max_retries, cache=cache, timeout=timeout)
    info = {"backend": s.backend.name, "model": s.backend.model_id, "model_sha256": s.backend.model_sha256,
            "prompt_version": "naive" if naive else s.prompts.version, "decoding": s.backend.decoding,
            "extractor": "naive" if naive else "summarizer", "fixtures": str(fixtures)}
    if naive:
        from summarizer.evals.naive import naive_extract

        def extract(text):
            return naive_extract(s.backend, text)
    else:
        extract = s.summarize
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err)
    task = progress.add_task("evaluating", total=len(fxs))
    with progress:
        report = run_eval(fxs, extract, info, on_article=lambda i, row: progress.advance(task))
    s.close()
    if prune_cache:
        err.print(f"pruned {s.backend.cache.prune()} unused entries from {cache_dir}")
    _print_report(report)
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if html_path:
        from summarizer.evals.html import render

        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render(report, fxs), encoding="utf-8")
    if export:
        from summarizer.evals.data import export_report

        for p in export_report(report, export):
            err.print(f"wrote {p}")
    if baseline:
        diff = compare(report, json.loads(baseline.read_text(encoding="utf-8")))
        t = Table(title=f"against {baseline}")
        t.add_column("field")
        t.add_column("ΔF1", justify="right")
        for k, v in diff["deltas"].items():
            t.add_row(k, f"{v:+.3f}")
        out.print(t)
        for w in diff["worse"]:
            out.print(f"worse: {w['id']}  {w['before']:.3f} → {w['after']:.3f}")
    if check:
        import tomllib

        fails = check_thresholds(report, tomllib.loads(check.read_text(encoding="utf-8")))
        for f in fails:
            err.print(f"[red]below threshold:[/red] {f}")
        if fails:
            raise typer.Exit(1)
        err.print(f"all scores at or above the thresholds in {check}")


@app.command()
def bench(
    folder: Optional[Path] = typer.Argument(None, help="articles to time (default: the fixture articles in fixtures/)"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    api_key: Optional[str] = ApiKeyOpt, max_retries: int = RetriesOpt, timeout: Optional[float] = TimeoutOpt,
    only: Optional[str] = typer.Option(None, "--only", help="only articles whose id contains this text"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="at most N articles"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="response cache to use (default: a new, empty one: a cold run)"),
    warm: bool = typer.Option(False, "--warm", help="then run the same articles again on the now-warm cache"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write all measurements here"),
    loopback: bool = typer.Option(False, "--loopback", help="remote throughput against a fixed-latency loopback endpoint instead"),
    latency: float = typer.Option(0.2, "--latency", help="--loopback: seconds per reply"),
    articles: int = typer.Option(200, "--articles", min=1, help="--loopback: synthetic articles per run"),
    concurrency: Optional[list[int]] = typer.Option(None, "--concurrency", "-c", help="--loopback: concurrency levels (repeatable; default 1, 8, 32)"),
) -> None:
    """Time the extractor per article beside the model-only floor (or remote throughput with --loopback)."""
    import tempfile

    from . import bench as b

    if loopback:
        rows = b.bench_throughput(concurrency or [1, 8, 32], articles, latency)
        t = Table(title=f"throughput: {articles} articles, loopback endpoint at {latency * 1000:.0f} ms per reply")
        for c in ("concurrency", "articles/s", "ideal", "ratio", "calls/article", "seconds", "failed"):
            t.add_column(c, justify="right")
        for r in rows:
            t.add_row(str(r["concurrency"]), f"{r['articles_per_s']:.2f}", f"{r['ideal_articles_per_s']:.2f}",
                      f"{r['ratio_to_ideal']:.0%}", f"{r['calls_per_article']:.1f}", f"{r['seconds']:.1f}",
                      str(r["failed"]))
        out.print(t)
        if json_path:
            json_path.write_text(json.dumps({"throughput": rows}, indent=1) + "\n", encoding="utf-8")
        return
    if folder is None:
        from summarizer.evals.runner import load_fixtures

        items = [(f.id, f.text) for f in load_fixtures(Path("fixtures"))]
    else:
        from .batch import find_articles, read_article

        items = [(str(rel), read_article(p)) for p, rel in find_articles(folder)]
    items = [(i, t) for i, t in items if not only or only in i][:limit]
    with tempfile.TemporaryDirectory() as tmp:
        # a cold run starts from nothing: no cached responses, no saved KV state of the prompt opening
        s = _summarizer(backend, model, base_url, api_key, max_retries, cache=cache_dir or Path(tmp), timeout=timeout,
                        kv_dir=Path(tmp) / "kv" if cache_dir is None else None)
        first = "cold" if cache_dir is None else "run"
        progress = lambda r: err.print(f"{r['id']}: {r['seconds']:.1f}s, {r['calls']} calls"  # noqa: E731
                                       + (f", model {r['model_seconds']:.1f}s" if "model_seconds" in r else "")
                                       + (f" [red]{escape(r['error'])}[/red]" if r["error"] else ""))
        runs = {first: b.bench_articles(s, items, on_article=progress)}
        if warm:
            runs["warm"] = b.bench_articles(s, items)
        s.close()
    for name, res in runs.items():
        _print_bench(name, res)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")


def _print_bench(name: str, res: dict) -> None:
    t = Table(title=f"bench ({name}): {res['backend']}/{res['model']}, threads {res.get('threads')}")
    cols = ["article", "s", "prompt tok", "compl tok", "calls", "retries", "tok/s", "model s", "× floor"]
    for c in cols:
        t.add_column(c, justify="left" if c == "article" else "right")
    for r in res["articles"]:
        ratio = r.get("floor_ratio")
        t.add_row(r["id"], f"{r['seconds']:.1f}", str(r["prompt_tokens"]), str(r["completion_tokens"]),
                  str(r["calls"]), str(r["retries"]), f"{r['completion_tok_s']:.1f}",
                  f"{r['model_seconds']:.1f}" if "model_seconds" in r else "-", f"{ratio:.2f}" if ratio else "-")
    out.print(t)
    a = res["aggregate"]
    lines = [f"{a['n_articles']} articles ({a['failed']} failed): median {a['median_s']:.1f} s, mean {a['mean_s']:.1f} s, "
             f"total {a['total_s']:.1f} s; model load {a['model_load_s']:.1f} s "
             f"(median with the load in the first article {a['median_s_incl_load']:.1f} s)",
             f"tokens: {a['prompt_tokens']} prompt + {a['completion_tokens']} completion "
             f"({a['completion_tok_s']:.1f} completion tok/s); {a['calls']} calls, {a['retries']} retries; "
             f"peak RSS {a['peak_rss_mb']:.0f} MB"]
    if a.get("model_seconds") == 0:
        lines.append("model-only floor: 0 s — no llama.cpp work at all (every response came from the cache)")
    elif a.get("model_seconds") is not None:
        lines.append(f"model-only floor: {a['model_seconds']:.1f} s inside llama.cpp ({a['prefill_tokens']} prompt tokens "
                     f"read, {a['decode_steps']} decode steps) → our time is {a['floor_ratio']:.2f} × the floor")
        if a.get("rates"):
            r = a["rates"]
            lines.append(f"llama.cpp alone on this machine: prefill {r['prefill_tok_s']:.0f} tok/s, decode "
                         f"{r['decode_tok_s']:.1f} tok/s → floor estimate {a['floor_estimate_s']:.1f} s "
                         f"(without KV-cache reuse {a['floor_without_kv_reuse_s']:.1f} s)")
    o = res.get("opening")
    if o:
        how = ("restored from disk" if o["source"] == "disk"
               else "computed in the first article (and saved: a later process restores it)")
        lines.append(f"prompt opening shared by every call: {o['tokens']} tokens, {how}, {o['seconds']:.2f} s")
    for line in lines:
        out.print(line)


def _print_report(report: dict) -> None:
    agg = report["aggregate"]
    t = Table(title=f"eval: {agg['n_articles']} articles · {report['provenance'].get('extractor')} · "
                    f"{report['provenance'].get('model')}")
    for c in ("field", "P", "R", "F1", "strict F1", "attributes"):
        t.add_column(c, justify="right" if c != "field" and c != "attributes" else "left")
    for f in ("actors", "positions", "demands", "figures"):
        d = agg[f]
        attrs = {"actors": ("kind_accuracy", "country_accuracy"), "positions": ("actor_accuracy",),
                 "demands": ("actor_accuracy", "addressee_f1"), "figures": ("unit_accuracy", "qualifier_accuracy")}[f]
        a = ", ".join(f"{k.replace('_accuracy', ' acc')} {d[k]:.2f}" for k in attrs if d.get(k) is not None)
        strict = f"{d['strict_f1']:.3f}" if d.get("strict_f1") is not None else ""
        t.add_row(f, f"{d['precision']:.3f}", f"{d['recall']:.3f}", f"{d['f1']:.3f}", strict, a)
    out.print(t)
    tm = report["timing"]
    out.print(f"overall F1 {report['overall_f1']:.3f} · valid {agg['valid_rate']:.3f} · grounded "
              f"{agg['grounded_rate']:.3f} · {tm['seconds_per_article_mean'] or 0:.1f} s/article (median "
              f"{tm['seconds_per_article_median'] or 0:.1f}) · tokens {tm['prompt_tokens']}+{tm['completion_tokens']}"
              f" · {tm['model_calls']} model calls")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
