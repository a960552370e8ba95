"""The logger's ``capture`` settings (``VIGIL_LOGGER_CAPTURE``, JSON), the one home of their defaults:
``spec.logger.capture`` inherits them (`vigil.spec.CaptureSpec`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FORMATS = ("jsonl", "parquet")


class CaptureSettings(BaseModel):
    #: Where the files go: a local directory (path or ``file://``) or an fsspec URL (``s3://…``).
    uri: str = Field(min_length=1, description="Directory the capture files are written to.")
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description=(
        "Share of inferences captured (one draw per inference, so its request and response stay together; "
        "feedback is always captured)."))
    format: Literal["jsonl", "parquet"] = Field("jsonl", description=(
        "jsonl: one JSON object per line, readable as it is written; parquet (needs pyarrow): readable once "
        "its file is rotated."))
    rotate_seconds: float = Field(300.0, ge=1.0, le=86400.0, description="A new file after this long.")
    #: How often the writer makes what it wrote readable (JSONL flush); well under the 10 s DESIGN allows.
    flush_seconds: float = Field(1.0, gt=0.0, le=10.0)
    #: Bound of the records waiting for the writer, by count and by bytes of their bodies.
    queue_size: int = Field(10000, ge=1)
    queue_bytes: int = Field(64 * 1024 * 1024, ge=1024)
