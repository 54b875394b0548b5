"""WeCom (企业微信) channel: callback crypto, XML parsing, reply builders and the async API client."""
