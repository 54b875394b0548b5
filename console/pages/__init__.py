"""Console pages: one module per page, each with ROUTES and NAV (see console.nav)."""
