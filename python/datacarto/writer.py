"""PLACEHOLDER: replaced by the DynamicsWriter implementation (issue 3)."""
class DynamicsWriter:  # pragma: no cover
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("DynamicsWriter is being written")
def to_probabilities(*args, **kwargs):  # pragma: no cover
    raise NotImplementedError
