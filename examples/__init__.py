"""The article's example app on tq: handlers (app), producer, and the demo (`make run`)."""
