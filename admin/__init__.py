"""Admin JSON API under /admin/v1 (design.md 3.3), behind the KEBIAO_ADMIN_TOKEN bearer token."""
