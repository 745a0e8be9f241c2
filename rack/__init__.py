"""bootsync rack."""
