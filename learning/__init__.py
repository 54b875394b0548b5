"""Learned tag suggester: features, training, inference and (de)serialisation without pickle."""
