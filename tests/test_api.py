import summarizer


def test_public_api_is_pinned():
    assert sorted(summarizer.__all__) == sorted([
        "__version__", "summarize", "Summarizer", "ArticleRecord", "Actor", "Position", "Demand",
        "Figure", "Evidence", "Provenance", "Usage", "SCHEMA_VERSION", "Backend", "get_backend",
        "ExtractionError", "TransportError", "ArticleError",
    ])
    for name in summarizer.__all__:
        assert hasattr(summarizer, name), name


def test_unknown_backend_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="unknown backend 'gpt'"):
        summarizer.get_backend("gpt")


def test_every_public_function_has_a_docstring():
    import inspect

    for name in summarizer.__all__:
        obj = getattr(summarizer, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, name
