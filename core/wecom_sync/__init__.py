"""WeCom contacts and corp tags mirrored as customers and tags, and the durable push port."""
