"""The article's handlers on tq: e-mail (simulated SMTP) and image processing (real, Pillow).

    tq-master start -A examples.app

`email` is the function form (@tq.handler), `image_processing` the class form (tq.Handler),
the two ways a tq handler can be written.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import time
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont

import tq

log = logging.getLogger(__name__)

EMAIL_FAILURE_RATE = 0.05          # the article's "occasional failures"
SMTP_LATENCY = (0.1, 0.5)          # seconds, as in the article
SOURCE_SIZE = (1600, 1200)         # the generated "uploaded photo"
TARGET_WIDTH = 800


class SMTPUnavailable(Exception):
    """The simulated SMTP server is busy; a retry usually gets through."""


@tq.handler("email", max_retries=3, timeout=10, backoff=tq.Backoff(base=0.5, cap=5.0))
def send_email(payload: dict[str, Any], ctx: tq.Context) -> dict[str, Any]:
    """Send a welcome e-mail (simulated: 100-500 ms, 5 % transient failures that retry)."""
    to = payload.get("to")
    if not isinstance(to, str) or "@" not in to:
        raise tq.PermanentError("missing 'to' field in email task")   # no retry can fix it
    ctx.log.debug("sending email to %s: %s", to, payload.get("subject", ""))
    time.sleep(random.uniform(*SMTP_LATENCY))
    if random.random() < EMAIL_FAILURE_RATE:
        raise SMTPUnavailable("SMTP server temporarily unavailable")
    return {"to": to, "message_id": f"<{ctx.task_id}@example.com>"}


class ImageProcessing(tq.Handler):
    """Resize, compress and watermark an image: real CPU work, ~0.1-0.3 s per task."""

    type = "image_processing"
    timeout = 60
    max_retries = 2

    def handle(self, payload: dict[str, Any], ctx: tq.Context) -> dict[str, Any]:
        url = payload.get("image_url")
        if not isinstance(url, str):
            raise tq.PermanentError("missing 'image_url' field")
        operations = payload.get("operations") or ["resize", "compress", "watermark"]
        unknown = [op for op in operations if op not in OPERATIONS]
        if unknown:
            raise tq.PermanentError(f"unknown operations {unknown}")
        started = time.process_time()
        image = source_image(url)
        data = b""
        for op in operations:
            image, data = OPERATIONS[op](image)
        if not data or operations[-1] != "compress":
            image, data = compress(image)
        return {"image_url": url, "operations": operations, "size": list(image.size),
                "bytes": len(data), "cpu_ms": round((time.process_time() - started) * 1000)}


def source_image(url: str) -> Image.Image:
    """A generated 'photo' standing in for `url` (nothing is downloaded): noise, gradients,
    and shapes placed by the url's hash."""
    seed = int.from_bytes(hashlib.sha256(url.encode()).digest()[:4], "big")
    rng = random.Random(seed)
    red = Image.effect_noise(SOURCE_SIZE, 30 + seed % 40).filter(ImageFilter.GaussianBlur(6))
    green = Image.linear_gradient("L").rotate(rng.randrange(360)).resize(SOURCE_SIZE)
    blue = Image.radial_gradient("L").resize(SOURCE_SIZE)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(SOURCE_SIZE[0]), rng.randrange(SOURCE_SIZE[1])
        r = rng.randrange(20, 200)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 255, 255), width=4)
    return image


def resize(image: Image.Image) -> tuple[Image.Image, bytes]:
    height = round(image.height * TARGET_WIDTH / image.width)
    return image.resize((TARGET_WIDTH, height), Image.Resampling.LANCZOS), b""


def compress(image: Image.Image) -> tuple[Image.Image, bytes]:
    """JPEG at quality 75; later operations work on the decoded result, artefacts and all."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=75, optimize=True, progressive=True)
    data = buf.getvalue()
    return Image.open(io.BytesIO(data)).convert("RGB"), data


def watermark(image: Image.Image) -> tuple[Image.Image, bytes]:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    font = ImageFont.load_default(size=max(image.width // 16, 12))
    margin = image.width // 40
    ImageDraw.Draw(layer).text((margin, image.height - margin), "processed by tq", font=font,
                               fill=(255, 255, 255, 140), anchor="ls")
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB"), b""


OPERATIONS = {"resize": resize, "compress": compress, "watermark": watermark}
