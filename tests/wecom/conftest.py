"""Fixtures for the WeCom channel tests; other test folders can import `fake_wecom` the same way."""

from tests.wecom.fake_api import fake_wecom

__all__ = ["fake_wecom"]
