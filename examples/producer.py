"""The article's producer: 100 welcome e-mails (every 10th high-priority) and 10 delayed
image-processing tasks (delays of seconds here, not the article's 1-5 minutes).

    python -m examples.producer [--emails 100] [--images 10] [--max-delay 5]
"""

from __future__ import annotations

import argparse
import logging
import random

import tq

HIGH_PRIORITY = 9     # 0 (default) to 9; the article's "priority 1" on its two-level scale


def produce(client: tq.Client, emails: int = 100, images: int = 10, max_delay: float = 5.0,
            rng: random.Random | None = None) -> dict[str, list[str]]:
    """Enqueue the article's tasks; returns their ids by type."""
    rng = rng or random.Random()
    ids: dict[str, list[str]] = {"email": [], "image_processing": []}
    for i in range(emails):
        ids["email"].append(client.enqueue(
            "email",
            {"to": f"user{i}@example.com", "subject": "Welcome to our service!",
             "body": "Thank you for signing up."},
            priority=HIGH_PRIORITY if i % 10 == 0 else 0))
    for i in range(images):
        ids["image_processing"].append(client.enqueue(
            "image_processing",
            {"image_url": f"https://example.com/images/{i}.jpg",
             "operations": ["resize", "compress", "watermark"]},
            delay=rng.uniform(0, max_delay)))
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=100)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--max-delay", type=float, default=5.0, help="seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tq.Client() as client:   # TQ_REDIS_URL, tq.toml, else the embedded Redis
        ids = produce(client, args.emails, args.images, args.max_delay)
    print(f"All tasks enqueued! ({len(ids['email'])} e-mails, "
          f"{len(ids['image_processing'])} delayed images)")


if __name__ == "__main__":
    main()
