"""Getting an image in safely: downloading, hashing, decoding and the limits on each."""
