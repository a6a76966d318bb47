"""One module per runtime that can run the I3D network (registered as backends)."""
