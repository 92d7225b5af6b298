"""Discord's OpenAPI description (vendored) and the validators built on it."""
