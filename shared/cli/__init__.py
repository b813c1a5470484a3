"""The tq operator CLI."""
