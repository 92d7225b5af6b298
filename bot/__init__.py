"""Glimpse: a self-hosted Discord bot that captions images and finds them by description."""
