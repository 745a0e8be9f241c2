"""bootsync simplestreams."""
