"""The Discord-facing domain: the client, captioning and search flows, permissions, cooldowns."""
