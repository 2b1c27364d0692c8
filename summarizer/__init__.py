"""summarizer: evidence-grounded records of actors, positions, demands and figures in news articles."""
__version__ = "0.1.0"

from .backends import Backend, ExtractionError, TransportError, get_backend  # noqa: E402
from .pipeline import ArticleError, Summarizer, summarize  # noqa: E402
from .schema import (  # noqa: E402
    SCHEMA_VERSION, Actor, ArticleRecord, Demand, Evidence, Figure, Position, Provenance, Usage,
)

__all__ = [
    "__version__", "summarize", "Summarizer", "ArticleRecord", "Actor", "Position", "Demand",
    "Figure", "Evidence", "Provenance", "Usage", "SCHEMA_VERSION", "Backend", "get_backend",
    "ExtractionError", "TransportError", "ArticleError",
]
