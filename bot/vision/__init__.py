"""The vision service: the caption and search models, and the batching that feeds them."""
