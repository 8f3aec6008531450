"""Small shared helpers: atomic writes, checksums, JSON."""
