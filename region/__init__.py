"""bootsync region."""
