"""Tags on customers: applying, suggesting, summarising, searching; customer look-up and users."""
