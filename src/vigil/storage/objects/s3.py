"""The S3 object store (boto3): the scale-out adapter behind the same port as `local.py`.

Content arrives in chunks and is never held whole: a writer buffers one part (8 MiB by default;
S3's minimum is 5 MiB) and switches to a multipart upload as soon as an object outgrows it, so
memory stays at one part per upload whatever the clip size. Small objects are one PUT. Either way
the object appears under its key only when the upload completes, and it is written with
`If-None-Match: *` so an existing object is never overwritten (S3 conditional writes; SeaweedFS
honours them too). Reads are ranged GETs streamed in `CHUNK_SIZE` pieces.

Objects reaching this adapter are already encrypted (`encrypted.py` wraps it): the bucket only
ever holds STREAM ciphertext, so S3 server-side encryption is defence in depth, not the control.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vigil.storage.objects.port import CHUNK_SIZE, ObjectExists, ObjectMissing, check_key

PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last


def _code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("NoSuchKey", "404", "NotFound")


def _exists(exc: Exception) -> bool:
    return _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


class S3Writer:
    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0
        self._open = True

    def write(self, chunk: bytes) -> None:
        if not self._open:
            raise ValueError("this object is already committed or aborted")
        self._buffer += chunk
        self._size += len(chunk)
        while len(self._buffer) >= self._part_size:
            self._upload_part(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            started = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        done = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
            PartNumber=number, Body=body,
        )  # fmt: skip
        self._parts.append({"ETag": done["ETag"], "PartNumber": number})

    def commit(self) -> int:
        if not self._open:
            raise ValueError("this object is already committed or aborted")
        try:
            if self._upload_id is None:
                self._client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer), IfNoneMatch="*"
                )
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))
                self._client.complete_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts}, IfNoneMatch="*",
                )  # fmt: skip
                self._upload_id = None
        except Exception as exc:
            self.abort()
            if _exists(exc):
                raise ObjectExists(self._key) from None
            raise
        self._open = False
        self._buffer = bytearray()
        return self._size

    def abort(self) -> None:
        self._open = False
        self._buffer = bytearray()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=upload_id
            )


class S3ObjectStore:
    def __init__(
        self, client: Any, bucket: str, *, part_size: int = PART_SIZE, chunk_size: int = CHUNK_SIZE
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError("S3 parts are at least 5 MiB")
        self._client, self.bucket = client, bucket
        self._part_size, self._chunk_size = part_size, chunk_size

    @classmethod
    def connect(
        cls,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> S3ObjectStore:
        """A boto3 client from explicit settings, else boto3's usual credential chain."""
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )
        return cls(client, bucket)

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self._client, self.bucket, check_key(key), self._part_size)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_key(key)
        if end is not None and end <= start:
            self.size(key)  # still "missing" before "empty"
            return iter(())
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            body = self._client.get_object(**args)["Body"]
        except Exception as exc:
            if _missing(exc):
                raise ObjectMissing(key) from None
            if _code(exc) == "InvalidRange":
                return iter(())
            raise
        return self._chunks(body)

    def _chunks(self, body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(self._chunk_size)
        finally:
            body.close()

    def size(self, key: str) -> int:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=check_key(key))
        except Exception as exc:
            if _missing(exc):
                raise ObjectMissing(key) from None
            raise
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=check_key(key))
