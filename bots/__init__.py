"""Chat platform adapters: each sub-package talks to one platform and imports only core and cards."""
