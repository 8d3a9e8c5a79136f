"""Offline and helper tools around the node: bag I/O, live replay, recording, evaluation,
metrics, pictures, the demo and child-process management."""
