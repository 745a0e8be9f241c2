"""The rack's TFTP server: boot files of the ``current`` snapshot for firmware that PXE-boots.

packets.py encodes and decodes TFTP packets (RFC 1350, options of RFC 2347);
paths.py resolves a requested name safely inside one snapshot; server.py is
the server (read requests only, blksize/tsize/timeout/windowsize): requests on the
event loop, each transfer's data phase in a worker thread.
"""
