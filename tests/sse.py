"""Server-sent event lines split as the SSE spec splits them: on CR, LF or CRLF only.

httpx's `iter_lines` also splits on Unicode line boundaries (U+2028, U+0085, ...), which a random-weight
model's tokens put inside the JSON strings of its events: one event then reads as two broken ones."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

_LINE_END = re.compile(r"\r\n|\r|\n")


def iter_lines(chunks: Iterable[str]) -> Iterator[str]:
    """The lines of a text stream (`response.iter_text()`)."""
    pending = ""
    for chunk in chunks:
        *complete, pending = _LINE_END.split(pending + chunk)
        yield from complete
    if pending:
        yield pending


async def aiter_lines(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
    """The lines of an async text stream (`response.aiter_text()`)."""
    pending = ""
    async for chunk in chunks:
        *complete, pending = _LINE_END.split(pending + chunk)
        for line in complete:
            yield line
    if pending:
        yield pending
