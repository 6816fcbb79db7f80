"""The das2 HTTP interface's argument handling, fuzzed in process: any query
gives a well-formed answer (text, or a das2 stream ending in an exception when
refused), never an unhandled error. The service behind it is a stand-in, so
no reader runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from nodes.das2.dsdf import load_catalog
from nodes.das2.http import DATASET_ARGS, Das2Resource
from nodes.das2.service import Outcome
from nodes.das2.stream import Das2StreamError, StreamException, StreamHeader, decode

EXAMPLES = Path(__file__).resolve().parent.parent / "nodes" / "das2" / "examples"
CATALOG, _ = load_catalog(EXAMPLES)


class StandIn:
    """Answers every valid request with an empty stream, at once."""

    catalog = CATALOG

    def __init__(self) -> None:
        self.asked = []

    def answer(self, request, emit, progress=False, flow=None):
        self.asked.append(request)
        emit([StreamHeader(), StreamException("NoDataInInterval", "none")])
        return defer.succeed(Outcome())


class Request(DummyRequest):
    """DummyRequest, taking a push producer as a real request does."""

    def registerProducer(self, producer, streaming):  # noqa: N802 - Twisted's name
        assert streaming
        self.producer = producer

    def unregisterProducer(self):  # noqa: N802
        self.producer = None


texts = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    [
        "2020-03-01",
        "2020-03-02T00:00Z",
        "60",
        "0",
        "-1",
        "nan",
        "1e309",
        "channels=96",
        "frame=gsm",
        "spectrogram",
        "magnetometer",
        "../magnetometer",
        "a;b",
        "$(id)",
        "1",
        "dataset",
        "list",
        "dsdf",
    ]
)
queries = st.dictionaries(
    st.sampled_from(sorted(DATASET_ARGS | {"bogus"})), st.lists(texts, min_size=1, max_size=2)
)


@settings(max_examples=300, deadline=None)
@given(queries)
@example(
    {
        "server": ["dataset"],
        "dataset": ["spectrogram"],
        "start_time": ["2020-03-01"],
        "end_time": ["2020-03-02T00:00Z"],
        "params": ["channels=96"],
        "ascii": ["1"],
    }
)
@example(
    {
        "server": ["dataset"],
        "dataset": ["magnetometer"],
        "start_time": ["2020-03-01"],
        "end_time": ["2020-03-02"],
        "resolution": ["60"],
    }
)
@pytest.mark.slow  # over 1 s in the unit lane (fuzz)
def test_any_query_gets_a_well_formed_answer(query):
    service = StandIn()
    resource = Das2Resource(service)
    request = Request([b""])
    for key, values in query.items():
        request.args[key.encode()] = [v.encode("utf-8", "surrogatepass") for v in values]
    body = resource.render_GET(request)
    if body is NOT_DONE_YET:
        assert request.finished and len(service.asked) == 1 and request.producer is None
        body = b"".join(request.written)
    code = request.responseCode or 200
    assert code in (200, 400, 404)
    mime = request.responseHeaders.getRawHeaders(b"content-type")[0]
    if mime.startswith(b"application/vnd.das2") or mime.startswith(b"text/vnd.das2"):
        try:
            events = decode(body)
        except Das2StreamError as exc:  # pragma: no cover - the assertion says why
            raise AssertionError(f"not a das2 stream: {exc}") from None
        assert isinstance(events[0], StreamHeader)
        if code != 200:
            assert events[-1].type == "IllegalArgument"
    else:
        body.decode("utf-8")
    if service.asked:
        req = service.asked[0]
        assert req.end_us > req.start_us and req.dataset in CATALOG
