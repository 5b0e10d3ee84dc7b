"""Database tables: photos, their processing sessions, regions, detections and stock.

Integer primary keys for joins, UUIDs for anything shown outside the database.
Idempotency lives in unique constraints, not only in code: one counting session per photo
(and one recount session per photo and model), one region per (session, index), one stock
batch per region and one stock movement per batch and recount model (the count's own, where
that model is ''), so a redelivered task or a repeated recount can never write a second movement.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class SessionStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    WARNING = "warning"  # some regions failed (the others were counted), or the count is doubtful
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (SessionStatus.COMPLETED, SessionStatus.WARNING, SessionStatus.FAILED)


UuidValue = uuid.UUID  # for columns declared after a class's own `uuid` column, which shadows the module
DEFAULT_TENANT = "default"  # photos taken in without an API key (`demeter process`, the demo)


class Photo(Base):
    """An uploaded photo. It belongs to one tenant: the uploading API key's.

    `idempotency_key` (unique per tenant) and `request_sha256` let a repeated upload get the
    first answer again; `content_sha256` finds byte-identical re-uploads (DUPLICATE_UPLOAD_*).
    """

    __tablename__ = "photos"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_photo_tenant_idempotency_key"),
        Index("ix_photos_tenant_created", "tenant", "created_at", "id"),  # listing: keyset on (created_at, id)
        Index("ix_photos_tenant_sha256", "tenant", "content_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4, unique=True)
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    original_filename: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    metadata_json: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    tenant: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    duplicate_of: Mapped[UuidValue | None] = mapped_column(Uuid)  # flagged re-upload of that photo

    # The photo's counting session (a recount's sessions are found by `recount_model`, app/db/repository.py).
    session: Mapped[ProcessingSession] = relationship(
        primaryjoin="and_(Photo.id == ProcessingSession.photo_id, ProcessingSession.recount_model == '')",
        uselist=False, viewonly=True)


class ProcessingSession(Base):
    """One run of a photo through the pipeline: its counting session (`recount_model` ''), or a recount
    of it with the trained model of that name (`demeter recount`)."""

    __tablename__ = "processing_sessions"
    __table_args__ = (UniqueConstraint("photo_id", "recount_model", name="uq_session_photo_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4, unique=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    # '' for the photo's count; the model's name (TRAINED_MODELS_DIR/<name>, or `shipped`) for a recount.
    recount_model: Mapped[str] = mapped_column(String(128), default="", server_default="")
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.PENDING, index=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    regions_total: Mapped[int | None] = mapped_column(Integer)
    regions_done: Mapped[int] = mapped_column(Integer, default=0)
    total_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Why the count may be wrong (app.ml.plausibility): [{"check", "message", "value", "limit"}].
    doubts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    # Provenance: the model card ids that produced the counts, {"segmentation": id, "detection": id}.
    model_cards: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    region_mode: Mapped[str | None] = mapped_column(String(16))  # segment | whole | supplied
    annotated_key: Mapped[str | None] = mapped_column(String(512))
    thumbnail_key: Mapped[str | None] = mapped_column(String(512))
    # Times the reconciler re-enqueued this photo because its work was gone from the broker.
    requeue_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    photo: Mapped[Photo] = relationship()
    regions: Mapped[list[Region]] = relationship(back_populates="session", order_by="Region.region_index")


class Region(Base):
    """A container found by segmentation: an open bed (`segment`) or a `tray`."""

    __tablename__ = "regions"
    __table_args__ = (UniqueConstraint("session_id", "region_index", name="uq_region_session_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("processing_sessions.id", ondelete="CASCADE"))
    region_index: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    x2: Mapped[int] = mapped_column(Integer)
    y2: Mapped[int] = mapped_column(Integer)
    polygon: Mapped[list[list[float]]] = mapped_column(JSON, default=list)
    plant_count: Mapped[int | None] = mapped_column(Integer)
    mean_confidence: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)

    session: Mapped[ProcessingSession] = relationship(back_populates="regions")

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)


class Detection(Base):
    """One plant found inside a region, in photo pixel coordinates."""

    __tablename__ = "detections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), index=True)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)


class StockBatch(Base):
    """The plants counted in one region: one batch per region."""

    __tablename__ = "stock_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4, unique=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("processing_sessions.id", ondelete="CASCADE"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), unique=True)
    container_type: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StockMovement(Base):
    """The stock change a count records (`count`), or a recount's difference to it (`recount`, on the
    counted region's batch). `idempotency_key` and (batch, recount model) make a second write impossible."""

    __tablename__ = "stock_movements"
    __table_args__ = (UniqueConstraint("batch_id", "recount_model", name="uq_movement_batch_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4, unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("stock_batches.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    movement_type: Mapped[str] = mapped_column(String(32), default="count")
    recount_model: Mapped[str] = mapped_column(String(128), default="", server_default="")  # '' for a count
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeadLetter(Base):
    """A task that failed for good, kept with everything needed to replay it."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(255), index=True)
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    args: Mapped[list[Any]] = mapped_column(JSON, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queue: Mapped[str | None] = mapped_column(String(64))
    exception_type: Mapped[str] = mapped_column(String(255))
    exception_message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    photo_id: Mapped[int | None] = mapped_column(Integer, index=True)
    first_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replay_task_id: Mapped[str | None] = mapped_column(String(64))


class ApiKey(Base):
    """An API key: a bearer token of which only a SHA-256 digest is kept (see app/db/apikeys.py)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # public part of the token, for look-up
    digest: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole token
    name: Mapped[str] = mapped_column(String(100))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
