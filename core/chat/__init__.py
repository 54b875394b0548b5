"""The channel-neutral chat service, its commands and its channel bookkeeping ports."""
