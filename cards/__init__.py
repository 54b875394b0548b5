"""Pure Adaptive Card builders (view dataclass in, card dict out) and WeCom renderers."""
