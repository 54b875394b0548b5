"""The manager console's services: who may enter, and the read models its pages show."""
