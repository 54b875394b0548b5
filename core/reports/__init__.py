"""Reports over tags and customers."""
