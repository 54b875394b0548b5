"""Learning from decisions: training data capture, labelled-history import, training, learned suggestions,
keyword discovery and retention."""
