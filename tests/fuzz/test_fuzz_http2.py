"""Our HTTP/2 server side under arbitrary frames: it never raises, and a peer that breaks the protocol is
answered with GOAWAY and dropped rather than crashing the link."""
from __future__ import annotations

import asyncio
import struct

from hpack import Encoder
from hypothesis import given, strategies as st

from plugin.host import http2
from tests.test_grpc_wire import Recorder
from .settings import FUZZ

KINDS = [http2.DATA, http2.HEADERS, http2.SETTINGS, http2.WINDOW_UPDATE, http2.GOAWAY, http2.CONTINUATION,
         http2.PING, 3, 5, 0x8, 0xff]
headers_block = st.lists(st.tuples(st.sampled_from([":method", ":path", "content-type", "te", "x-a"]),
                                   st.text(max_size=20)), max_size=5).map(
    lambda hs: Encoder().encode(hs))
payloads = st.one_of(st.binary(max_size=64), headers_block,
                     st.integers(0, 2**31 - 1).map(lambda n: struct.pack(">I", n)),
                     st.lists(st.tuples(st.integers(0, 8), st.integers(0, 2**32 - 1)), max_size=3).map(
                         lambda kv: b"".join(struct.pack(">HI", k, v) for k, v in kv)))
frames = st.tuples(st.sampled_from(KINDS), st.integers(0, 255), st.integers(0, 9), payloads).map(
    lambda f: http2.frame(f[0], f[1], f[2], f[3]))


def _feed(chunks: list[bytes]) -> Recorder:
    async def go() -> Recorder:
        conn = http2.Connection()
        rec = Recorder()
        conn.connection_made(rec)  # type: ignore[arg-type]
        for chunk in chunks:
            if rec.closed:
                break
            conn.data_received(chunk)
        await asyncio.sleep(0)
        conn.connection_lost(None)
        return rec
    return asyncio.run(go())


@FUZZ
@given(st.lists(frames, max_size=12), st.integers(1, 50))
def test_arbitrary_frames_after_the_preface_never_raise(frame_list, split):
    data = http2.PREFACE + b"".join(frame_list)
    rec = _feed([data[i:i + split] for i in range(0, len(data), split)])
    if rec.closed:
        assert bytes([http2.GOAWAY]) in rec.data


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    _feed([data])


@FUZZ
@given(st.integers(http2.DEFAULT_MAX_FRAME + 1, 2**24 - 1))
def test_oversized_frames_are_refused_before_they_are_buffered(length):
    header = struct.pack(">BHBBI", length >> 16, length & 0xFFFF, http2.DATA, 0, 1)
    rec = _feed([http2.PREFACE + header])
    assert rec.closed and bytes([http2.GOAWAY]) in rec.data
