"""File input/output at the edges: image readers and atomic writers."""
