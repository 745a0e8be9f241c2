"""bootsync common."""
