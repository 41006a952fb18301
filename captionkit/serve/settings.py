"""The server's settings: limits, batching and access control (what `captionkit serve` flags set)."""

from __future__ import annotations

from dataclasses import dataclass, field

from captionkit.errors import ConfigError


@dataclass
class ServeSettings:
    """How a captionkit server behaves. Every limit answers a client with an error instead of slowing or
    crashing the server: over `max_upload_mb` or `max_pixels` -> 413, more than `max_queue` images waiting for
    a model -> 503."""

    api_key: str | None = None  # required (Bearer or X-API-Key) on /v1/* when set
    allow_origins: list[str] = field(default_factory=list)  # origins allowed cross-origin (CORS); none by default
    max_batch: int = 16  # images per encoder pass / batched decode; 1 turns micro-batching off
    batch_wait_ms: float = 5.0  # how long a worker waits for more images after the first one arrives
    max_queue: int = 256  # images waiting per model before requests get 503
    max_upload_mb: float = 20.0  # largest request body, all its images together
    max_images: int = 32  # images in one request
    max_pixels: int | None = None  # per image; None: captionkit.data.images' limit (PIL's, ~89 Mpx)
    max_beams: int = 8  # num_beams above this is refused (422): it multiplies the work of a request
    max_new_tokens: int = 100  # max_new_tokens above this is refused (422)
    device: str | None = None  # for model directories the server loads itself
    dtype: str | None = None  # their number format: float32 (default), bfloat16, float16 (GPU)
    quantize: str | None = None  # "int8": their decoders in dynamic int8 (CPU)
    # CLIPs ("clip:SOURCE") a request may name as rerank_clip, loaded with the models; clients cannot name others
    rerank_clips: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch >= 1, "max_batch must be >= 1"),
            (self.batch_wait_ms >= 0, "batch_wait_ms must be >= 0"),
            (self.max_queue >= 1, "max_queue must be >= 1"),
            (self.max_upload_mb > 0, "max_upload_mb must be > 0"),
            (self.max_images >= 1, "max_images must be >= 1"),
            (self.max_pixels is None or self.max_pixels > 0, "max_pixels must be > 0"),
            (self.max_beams >= 1, "max_beams must be >= 1"),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.api_key is None or self.api_key != "", "api_key must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"serve settings: {message}")
        from captionkit.models.precision import resolve_precision

        try:
            resolve_precision(self.dtype, self.quantize, self.device)
        except ConfigError as exc:
            raise ConfigError(f"serve settings: {exc}") from None

    @property
    def precision_options(self) -> dict[str, str]:
        """captionkit.load's dtype / quantize keywords for the models the server loads."""
        return {k: v for k, v in {"dtype": self.dtype, "quantize": self.quantize}.items() if v is not None}

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
