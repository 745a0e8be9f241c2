"""Several regions on one database: identity, leases, events, shared secrets, peer blobs."""
