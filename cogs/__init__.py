"""Thin Discord glue, one concern per file: read the command, call `bot/`, send the reply."""
