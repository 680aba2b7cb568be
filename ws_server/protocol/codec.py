"""Frame encoding for the two subprotocols. Records are encoded once and frames are spliced from the
encoded pieces, so a frame for thousands of members costs one join of bytes, not a serialiser pass each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import orjson

JSON = "shfeeds.v1.json"
MSGPACK = "shfeeds.v1.msgpack"
SUBPROTOCOLS = (JSON, MSGPACK)


class Codec:
    name: str
    binary: bool

    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def encode_kept(self, obj: Any) -> bytes:
        """``encode`` for bytes that stay in memory (a record's encoding, kept while the entity lives)."""
        return self.encode(obj)

    def delta(
        self,
        head: dict[str, Any],
        upserts: Sequence[bytes],
        removes: Sequence[str],
        stales: Sequence[str],
    ) -> bytes:
        """``head`` fields, then ``upsert`` (already-encoded records), ``remove`` and ``stale`` ids."""
        raise NotImplementedError

    def records(self, head: dict[str, Any], records: Sequence[bytes]) -> bytes:
        """``head`` fields, then ``records`` (already encoded): a snapshot part."""
        raise NotImplementedError


class JsonCodec(Codec):
    name = JSON
    binary = False

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def encode_kept(self, obj: Any) -> bytes:
        # orjson (3.12+) returns bytes in an over-allocated buffer it never shrinks: at least 4 KiB for a
        # 200-byte record, measured. Kept for every entity of every feed, that was most of a node's memory;
        # a right-sized copy costs a fraction of a microsecond.
        return bytes(memoryview(orjson.dumps(obj)))

    def delta(
        self, head: dict[str, Any], upserts: Sequence[bytes], removes: Sequence[str], stales: Sequence[str]
    ) -> bytes:
        return b"".join(
            (
                orjson.dumps(head)[:-1],
                b',"upsert":[',
                b",".join(upserts),
                b'],"remove":',
                orjson.dumps(removes),
                b',"stale":',
                orjson.dumps(stales),
                b"}",
            )
        )

    def records(self, head: dict[str, Any], records: Sequence[bytes]) -> bytes:
        return b"".join((orjson.dumps(head)[:-1], b',"records":[', b",".join(records), b"]}"))


class MsgpackCodec(Codec):
    name = MSGPACK
    binary = True

    def __init__(self) -> None:
        self._packer = msgpack.Packer(autoreset=True)

    def encode(self, obj: Any) -> bytes:
        return self._packer.pack(obj)

    def _head(self, head: dict[str, Any], extra: int) -> list[bytes]:
        """The map header for ``head`` and ``extra`` more entries, then ``head``'s entries. A small map is
        packed in one call and its header byte (fixmap: 0x80 | count) recounted: a frame per member per tick
        makes this one of the server's hottest lines."""
        packed = self._packer.pack(head)
        count = len(head) + extra
        if count <= 15 and packed[0] == 0x80 | len(head):
            return [bytes((0x80 | count,)), packed[1:]]
        pack = self._packer.pack
        parts = [self._packer.pack_map_header(count)]
        for key, value in head.items():
            parts.append(pack(key))
            parts.append(pack(value))
        return parts

    def delta(
        self, head: dict[str, Any], upserts: Sequence[bytes], removes: Sequence[str], stales: Sequence[str]
    ) -> bytes:
        parts = self._head(head, 3)
        parts += [_UPSERT_KEY, self._packer.pack_array_header(len(upserts)), *upserts]
        parts += [_REMOVE_KEY, self._packer.pack(list(removes)) if removes else _EMPTY_ARRAY]
        parts += [_STALE_KEY, self._packer.pack(list(stales)) if stales else _EMPTY_ARRAY]
        return b"".join(parts)

    def records(self, head: dict[str, Any], records: Sequence[bytes]) -> bytes:
        parts = self._head(head, 1)
        parts += [_RECORDS_KEY, self._packer.pack_array_header(len(records)), *records]
        return b"".join(parts)


_UPSERT_KEY, _REMOVE_KEY, _STALE_KEY, _RECORDS_KEY = (
    msgpack.packb(k) for k in ("upsert", "remove", "stale", "records")
)
_EMPTY_ARRAY = msgpack.packb([])


CODECS: dict[str, Codec] = {JSON: JsonCodec(), MSGPACK: MsgpackCodec()}


def decode_frame(data: bytes | str) -> Any:
    """Decode a server frame of either subprotocol (for clients and tests)."""
    if isinstance(data, str):
        return orjson.loads(data)
    if data[:1] == b"{":
        return orjson.loads(data)
    return msgpack.unpackb(data, raw=False)
